"""A checkpoint written by a real Lightning Trainer, with the hyper-parameters
that make torch.load(weights_only=True) fail ("Unsupported global")."""
import argparse
import functools

import pytest
import torch

import ckptkit
import ckptkit.torch
from conftest import same_tensor

pl = pytest.importorskip("pytorch_lightning")


class Lit(pl.LightningModule):
    def __init__(self, args, loss, act):
        super().__init__()
        self.save_hyperparameters()
        self.net = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.BatchNorm1d(8),
                                       torch.nn.ReLU(), torch.nn.Linear(8, 2))

    def training_step(self, batch, _):
        x, y = batch
        return self.hparams.loss(self.net(x), y)

    def configure_optimizers(self):
        return torch.optim.Adam(self.parameters(), lr=self.hparams.args.lr)


def test_trainer_checkpoint(tmp_path):
    torch.manual_seed(0)
    data = torch.utils.data.TensorDataset(torch.randn(16, 4), torch.randn(16, 2))
    loader = torch.utils.data.DataLoader(data, batch_size=4)
    model = Lit(argparse.Namespace(lr=0.01, layers=[4, 8, 2]), torch.nn.MSELoss(),
                functools.partial(torch.nn.functional.leaky_relu, negative_slope=0.1))
    trainer = pl.Trainer(max_epochs=2, logger=False, enable_checkpointing=False,
                         enable_progress_bar=False, enable_model_summary=False,
                         default_root_dir=str(tmp_path), accelerator="cpu")
    trainer.fit(model, loader)
    path = tmp_path / "last.ckpt"
    trainer.save_checkpoint(path)

    with pytest.raises(Exception, match="global"):
        torch.load(path, weights_only=True)
    ck = ckptkit.torch.load(path)
    ref = torch.load(path, weights_only=False)  # written by this test: safe to unpickle
    assert ck["epoch"] == ref["epoch"] and ck["global_step"] == ref["global_step"]
    assert list(ck["state_dict"]) == list(ref["state_dict"])
    for k, v in ref["state_dict"].items():
        same_tensor(ck["state_dict"][k], v)
    st = ck["optimizer_states"][0]["state"]
    for i, s in ref["optimizer_states"][0]["state"].items():
        same_tensor(st[i]["exp_avg"], s["exp_avg"])
    hp = ck["hyper_parameters"]
    args = hp["args"] if isinstance(hp, dict) else hp.args
    assert args == {"lr": 0.01, "layers": [4, 8, 2]}  # argparse.Namespace, as its fields
    loss = hp["loss"] if isinstance(hp, dict) else hp.loss
    assert isinstance(loss, ckptkit.Opaque) and loss.name == "MSELoss"
    # the state dict loads straight into a fresh model
    fresh = Lit(argparse.Namespace(lr=0.01, layers=[4, 8, 2]), torch.nn.MSELoss(), None)
    fresh.load_state_dict(ck["state_dict"])
    for k, v in fresh.state_dict().items():
        same_tensor(v, ref["state_dict"][k])
    # and the same file through the safetensors-style API
    sd = ckptkit.torch.load_file(path)
    assert sorted(sd) == sorted(ref["state_dict"])
