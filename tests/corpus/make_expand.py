#!/usr/bin/python3
"""Writes tests/corpus/bad/expand/: checkpoints whose views declare far more
bytes than their storage holds (stride 0, as torch's expand() makes), which a
dense writer would blow up without bound. `ckptkit info` reads them; `convert`
must refuse them unless --allow-expand. Run with Debian's /usr/bin/python3."""
import os
import sys

import torch

HERE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "bad", "expand")


def main():
    os.makedirs(HERE, exist_ok=True)
    # one float32 element standing for a 100000 x 100000 matrix (40 GB dense)
    torch.save({"w": torch.zeros(1).expand(100000, 100000), "b": torch.ones(3)},
               os.path.join(HERE, "broadcast.pt"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
