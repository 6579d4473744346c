"""Run by tests/test_distributed.py under torchrun (or alone): fit a small model on real digits, save losses and
predictions from rank 0. Same seed and global batch in 1 or N processes must give the same numbers."""
import sys

import numpy as np
import torch
from torch import nn

from kitbox import Learner, Task, TensorLoader, seed_everything
from kitbox import distributed
from test_learner import load_digits


def main(out_path: str) -> None:
    distributed.init_from_env()
    torch.set_num_threads(1)
    x, y = load_digits(n_max=2048)
    x, y = x[:2048], y[:2048]
    seed_everything(0)
    model = nn.Sequential(nn.Linear(x.shape[1], 64), nn.ReLU(), nn.Linear(64, 10))
    train = TensorLoader(x[:1536], y[:1536], batch_size=128, shuffle=True, seed=0)
    valid = TensorLoader(x[1536:], y[1536:], batch_size=100)  # 512 rows: the last batch is short
    learn = Learner(model, train, valid, Task("multiclass", n_out=10), metrics=["accuracy"], progress=False)
    learn.fit_one_cycle(2, 1e-2)
    pred, target = learn.get_preds()
    if distributed.is_main():
        np.savez(out_path, losses=np.array(learn.recorder["loss"]), pred=pred, target=target,
                 valid_loss=learn.history[-1]["valid_loss"], world=distributed.world_size())
    if distributed.is_distributed():
        torch.distributed.destroy_process_group()


if __name__ == "__main__":
    main(sys.argv[1])
