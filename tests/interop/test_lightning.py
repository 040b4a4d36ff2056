"""The Lightning workflow people copy, run for real and taken through ckptkit.

A LightningModule holding nn.Linear(10, 1) and nn.MSELoss trains on a few
random batches on the CPU with ModelCheckpoint(monitor="val_loss",
filename="best-model-{epoch:02d}-{val_loss:.2f}", save_top_k=3, mode="min").
For every checkpoint the trainer kept, ckptkit must:
  - show epoch, global_step, hyper-parameters, callbacks and optimizer state
    (info, info --json, ls --all), agreeing with what torch.load finds there;
  - convert it to safetensors as is and with --strip-prefix, bit-exact;
  - convert those safetensors back to .ckpt files that
    MyLightningModel.load_from_checkpoint() accepts, giving a model whose
    predictions are bit-identical to the original checkpoint's.
"""
import json
import os
import re
import subprocess

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pl = pytest.importorskip("pytorch_lightning")
st_torch = pytest.importorskip("safetensors.torch")

from torch import nn  # noqa: E402
from torch.utils.data import DataLoader, TensorDataset  # noqa: E402

from compat import record  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CKPTKIT = os.environ.get("CKPTKIT", os.path.join(ROOT, "build", "ckptkit"))

EPOCHS = 5
HPARAMS = {"lr": 0.02, "in_features": 10}


def ck(*args, expect=0):
    r = subprocess.run([CKPTKIT] + [str(a) for a in args], capture_output=True, text=True)
    assert r.returncode == expect, (args, r.returncode, r.stdout, r.stderr)
    return r


class MyLightningModel(pl.LightningModule):
    def __init__(self, lr=0.02, in_features=10):
        super().__init__()
        self.save_hyperparameters()
        self.layer = nn.Linear(in_features, 1)
        self.loss_fn = nn.MSELoss()

    def forward(self, x):
        return self.layer(x)

    def training_step(self, batch, batch_idx):
        x, y = batch
        return self.loss_fn(self(x), y)

    def validation_step(self, batch, batch_idx):
        x, y = batch
        self.log("val_loss", self.loss_fn(self(x), y))

    def configure_optimizers(self):
        return torch.optim.Adam(self.parameters(), lr=self.hparams.lr)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """Trains once; returns (checkpoint folder, ModelCheckpoint callback)."""
    torch.set_num_threads(1)
    work = tmp_path_factory.mktemp("lightning")
    pl.seed_everything(1234, verbose=False)
    g = torch.Generator().manual_seed(1234)
    x = torch.randn(64, 10, generator=g)
    y = x @ torch.randn(10, 1, generator=g) + 0.1 * torch.randn(64, 1, generator=g)
    train = DataLoader(TensorDataset(x[:48], y[:48]), batch_size=16)
    val = DataLoader(TensorDataset(x[48:], y[48:]), batch_size=16)
    checkpoint = pl.callbacks.ModelCheckpoint(
        dirpath=str(work / "checkpoints"), monitor="val_loss",
        filename="best-model-{epoch:02d}-{val_loss:.2f}", save_top_k=3, mode="min")
    trainer = pl.Trainer(max_epochs=EPOCHS, accelerator="cpu", devices=1, logger=False,
                         enable_progress_bar=False, enable_model_summary=False,
                         callbacks=[checkpoint], default_root_dir=str(work))
    trainer.fit(MyLightningModel(**HPARAMS), train, val)
    return work, checkpoint


def saved(trained):
    folder = trained[0] / "checkpoints"
    files = sorted(folder.glob("*.ckpt"))
    assert len(files) == 3, files  # save_top_k=3 over 5 epochs
    for f in files:
        assert re.fullmatch(r"best-model-epoch=\d\d-val_loss=\d+\.\d\d\.ckpt", f.name), f.name
    return files


def predict(model, x):
    model.eval()
    with torch.no_grad():
        return model(x)


def probe():
    return torch.randn(32, 10, generator=torch.Generator().manual_seed(7))


def test_info_and_ls_show_the_training_state(trained):
    _, callback = trained
    for path in saved(trained):
        ref = torch.load(path, map_location="cpu", weights_only=False)  # written here, benign
        epoch = int(re.search(r"epoch=(\d\d)", path.name).group(1))
        assert ref["epoch"] == epoch

        text = ck("info", path).stdout
        assert re.search(r"^format:\s+torch-zip$", text, re.M), text
        assert re.search(r"^tensors:\s+2$", text, re.M), text
        assert re.search(r"^parameters:\s+11$", text, re.M), text
        assert re.search(r"^\s+epoch: %d$" % epoch, text, re.M), text
        assert re.search(r"^\s+global_step: %d$" % ref["global_step"], text, re.M), text
        assert re.search(r"^\s+pytorch-lightning_version: %s$" % re.escape(pl.__version__),
                         text, re.M), text
        for key in ("hyper_parameters", "callbacks", "optimizer_states", "loops"):
            assert key in text.split("values:", 1)[1], (key, text)

        info = json.loads(ck("info", path, "--json").stdout)
        values = info["values"]
        assert values["epoch"] == epoch and values["global_step"] == ref["global_step"]
        assert values["hyper_parameters"] == HPARAMS == dict(ref["hyper_parameters"])
        assert values["pytorch-lightning_version"] == pl.__version__
        # The callback state: ModelCheckpoint's key and its fields as Lightning wrote them.
        (cb_key,) = [k for k in values["callbacks"] if k.startswith("ModelCheckpoint")]
        assert list(ref["callbacks"]) == [cb_key]
        cb, ref_cb = values["callbacks"][cb_key], ref["callbacks"][cb_key]
        assert cb["monitor"] == "val_loss"
        assert cb["best_model_path"] == ref_cb["best_model_path"]
        assert cb["dirpath"] == ref_cb["dirpath"] == callback.dirpath
        assert sorted(cb["best_k_models"]) == sorted(ref_cb["best_k_models"])
        assert cb["best_model_score"] == {"tensor": {"dtype": "F32", "shape": []}}
        # The optimizer: Adam's hyper-parameters and one state per parameter.
        (opt,) = values["optimizer_states"]
        (ref_opt,) = ref["optimizer_states"]
        assert opt["param_groups"][0]["lr"] == HPARAMS["lr"]
        assert opt["param_groups"][0]["betas"] == list(ref_opt["param_groups"][0]["betas"])
        assert opt["param_groups"][0]["params"] == [0, 1]
        assert sorted(opt["state"]) == ["0", "1"]

        # ls --all: every tensor of the tree, dtype and shape as torch has them.
        listed = {t["name"]: t for t in json.loads(ck("ls", path, "--all", "--json").stdout)["tensors"]}
        want = {}
        for k, v in ref["state_dict"].items():
            want["state_dict." + k] = v
        for i, state in ref_opt["state"].items():
            for k, v in state.items():
                want["optimizer_states.0.state.%d.%s" % (i, k)] = v
        for k in ("best_model_score", "current_score", "kth_value"):
            want["callbacks.%s.%s" % (cb_key, k)] = ref_cb[k]
        for k, v in ref_cb["best_k_models"].items():
            want["callbacks.%s.best_k_models.%s" % (cb_key, k)] = v
        assert sorted(listed) == sorted(want)
        for name, t in want.items():
            assert listed[name]["dtype"] == "F32", name
            assert listed[name]["shape"] == list(t.shape), name
        ls_text = ck("ls", path, "--all").stdout
        assert "optimizer_states.0.state.0.exp_avg_sq " in ls_text

        # The optimizer state's values, exported from the optimizer's sub-tree.
        out = path.parent.parent / ("adam-" + path.stem)
        ck("export", path, "exp_avg", "exp_avg_sq", "--key", "optimizer_states.0.state.0",
           "-o", out, "-q")
        for k in ("exp_avg", "exp_avg_sq"):
            got = np.load(out / (k + ".npy"))
            assert np.array_equal(got, ref_opt["state"][0][k].numpy()), k

    record("pytorch-lightning", pl.__version__, "reads",
           "Trainer/ModelCheckpoint .ckpt: info and ls --all show epoch, global_step, "
           "hyper-parameters, callbacks, optimizer state")


def test_safetensors_and_back_give_identical_predictions(trained):
    work = trained[0]
    x = probe()
    for path in saved(trained):
        original = MyLightningModel.load_from_checkpoint(str(path), map_location="cpu")
        want = predict(original, x)
        sd = original.state_dict()
        assert sorted(sd) == ["layer.bias", "layer.weight"]

        # As is: the state dict under its own names, the training counters as metadata.
        plain = work / (path.stem + ".safetensors")
        ck("convert", path, plain, "-q")
        got = st_torch.load_file(str(plain))
        assert sorted(got) == sorted(sd)
        for k in sd:
            assert torch.equal(got[k], sd[k]) and got[k].dtype == sd[k].dtype, k
        meta = json.loads(ck("info", plain, "--json").stdout)["metadata"]
        ref = torch.load(path, map_location="cpu", weights_only=False)
        assert meta["epoch"] == str(ref["epoch"])
        assert meta["global_step"] == str(ref["global_step"])

        # --strip-prefix: the bare nn.Linear's names, loadable into the layer itself.
        stripped = work / (path.stem + ".stripped.safetensors")
        ck("convert", path, stripped, "--strip-prefix", "layer.", "-q")
        bare = st_torch.load_file(str(stripped))
        assert sorted(bare) == ["bias", "weight"]
        layer = nn.Linear(10, 1)
        layer.load_state_dict(bare, strict=True)
        with torch.no_grad():
            assert torch.equal(layer(x), want)

        # Back to .ckpt, then the way users load a Lightning checkpoint.
        back = work / (path.stem + ".back.ckpt")
        ck("convert", plain, back, "-q")
        back2 = work / (path.stem + ".stripped.back.ckpt")
        ck("convert", stripped, back2, "--add-prefix", "layer.", "-q")
        for b in (back, back2):
            reloaded = MyLightningModel.load_from_checkpoint(str(b), map_location="cpu")
            for k, v in reloaded.state_dict().items():
                assert torch.equal(v, sd[k]), (b, k)
            got_pred = predict(reloaded, x)
            assert torch.equal(got_pred, want), b
            # Bit-identical, not merely equal: same bytes.
            assert got_pred.numpy().tobytes() == want.numpy().tobytes()
            # The counters survive the trip through safetensors metadata.
            again = torch.load(b, map_location="cpu", weights_only=True)
            assert again["epoch"] == ref["epoch"] and again["global_step"] == ref["global_step"]

    record("pytorch-lightning", pl.__version__, "reads",
           "Trainer/ModelCheckpoint .ckpt converted to safetensors (as is and "
           "--strip-prefix), bit-exact")
    record("pytorch-lightning", pl.__version__, "writes",
           "load_from_checkpoint of a .ckpt converted back from safetensors: "
           "bit-identical predictions")
