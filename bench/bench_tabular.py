"""One epoch of the entity-embedding MLP (layers 1000-500, batch 512) on Rossmann-shaped data: kitbox's Learner
against the leanest hand-written loop over the same tensors, in the same process (issues 2 and 4).

    nohup python bench/bench_tabular.py --data ../shared/data/rossmann-store-sales --rounds 2 --threads 2 \
        > /tmp/bench_tabular.log 2>&1 &

``--data`` takes the real rows: the Rossmann adapter's open-day training rows (~844k on Kaggle's full data) through
the fitted processor, exactly the tensors ``submit.py rossmann`` trains on. Without it, ``--rows`` synthetic rows
with the real problem's cardinalities stand in (for a machine without the data).

Both loops train the same model from the same initial weights with the same AdamW settings on batches sliced from
the same pre-built tensors through a shuffled index. Rounds alternate (lean, Learner, lean, Learner, ...) so a
neighbour's load on a shared machine hits both alike; the ratio of rows/s is the figure to quote.
"""
import argparse
import copy
import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from kitbox.training.sampling import TensorLoader
from kitbox.training.learner import Learner
from kitbox.tabular.model import TabularModel
from kitbox.training.tasks import Task

# Cardinalities (categories + the reserved code 0) of the Rossmann adapter's categorical inputs on the full data, and
# its number of continuous inputs: the shape of the real problem without needing the data.
ROSSMANN_CARDINALITIES = [1116, 8, 4, 13, 32, 53, 5, 26, 28, 3, 5, 4, 4, 24, 8, 13, 22, 7, 7, 4, 4, 9, 9, 3, 3]
ROSSMANN_N_CONT = 21


def make_data(n_rows: int, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    x_cat = torch.stack([torch.randint(0, c, (n_rows,), generator=g) for c in ROSSMANN_CARDINALITIES], dim=1)
    x_cont = torch.randn(n_rows, ROSSMANN_N_CONT, generator=g)
    # a learnable target in log-sales units, so both loops do real optimization work
    y = 8.5 + 0.3 * torch.tanh(x_cont[:, :4].sum(1)) + 0.01 * (x_cat[:, 0] % 17).float()
    return x_cat, x_cont, y


def real_data(data_dir: Path):
    """The Rossmann adapter's training rows as (x_cat, x_cont, log sales) tensors, plus the cardinalities."""
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # `competitions` lives beside `kitbox`
    from competitions.rossmann import Rossmann
    from kitbox.tabular.processor import TabularProcessor

    data = Rossmann().load(data_dir)
    processor = TabularProcessor(data.columns.cat, data.columns.cont).fit(data.train)
    x_cat, x_cont, y = processor.tensors(data.train, np.log1p(data.train["Sales"].to_numpy(np.float64)))
    return x_cat, x_cont, y.float(), processor.cardinalities, len(processor.cont_names)


def lean_epoch(model, x_cat, x_cont, y, bs, lr, wd, y_range, seed):
    """The baseline: shuffled index, slice, forward, MSE on the scaled sigmoid, backward, AdamW step. Nothing else."""
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=wd, betas=(0.9, 0.99), eps=1e-5)
    lo, hi = y_range
    model.train()
    index = torch.randperm(len(y), generator=torch.Generator().manual_seed(seed))
    n_full = len(y) // bs * bs
    t0 = time.perf_counter()
    for start in range(0, n_full, bs):
        rows = index[start:start + bs]
        pred = torch.sigmoid(model(x_cat[rows], x_cont[rows]).squeeze(-1)) * (hi - lo) + lo
        loss = F.mse_loss(pred, y[rows])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    loss.item()
    return n_full / (time.perf_counter() - t0)


def learner_epoch(model, x_cat, x_cont, y, bs, lr, wd, y_range, seed, progress):
    loader = TensorLoader(x_cat, x_cont, y, batch_size=bs, shuffle=True, drop_last=True, seed=seed)
    learn = Learner(model, loader, task=Task("regression", y_range=y_range), wd=wd, progress=progress, device="cpu")
    t0 = time.perf_counter()
    learn.fit_one_cycle(1, lr)
    return len(loader) * bs / (time.perf_counter() - t0)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=None, help="Rossmann folder: benchmark on its real rows")
    parser.add_argument("--rows", type=int, default=1_000_000, help="synthetic rows when --data is not given")
    parser.add_argument("--bs", type=int, default=512)
    parser.add_argument("--rounds", type=int, default=2, help="epochs of each loop, alternating")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--progress", action="store_true", help="time the Learner with its progress bar on")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    if args.data is not None:
        x_cat, x_cont, y, cardinalities, n_cont = real_data(args.data)
    else:
        (x_cat, x_cont, y), cardinalities, n_cont = make_data(args.rows), ROSSMANN_CARDINALITIES, ROSSMANN_N_CONT
    y_range = (0.0, float(y.max()) * 1.2)
    init = TabularModel(cardinalities, n_cont, layers=(1000, 500), ps=(0.001, 0.01), emb_drop=0.04)
    print(f"rows {len(y)} ({'real: ' + str(args.data) if args.data else 'synthetic'}), batch {args.bs}, {sum(p.numel() for p in init.parameters()):,} parameters, "
          f"{args.threads} threads", flush=True)
    lean, kit = [], []
    for r in range(args.rounds):
        lean.append(lean_epoch(copy.deepcopy(init), x_cat, x_cont, y, args.bs, 1e-3, 0.2, y_range, seed=r))
        print(f"round {r}: lean loop {lean[-1]:,.0f} rows/s", flush=True)
        kit.append(learner_epoch(copy.deepcopy(init), x_cat, x_cont, y, args.bs, 1e-3, 0.2, y_range, r, args.progress))
        print(f"round {r}: Learner   {kit[-1]:,.0f} rows/s  (ratio {kit[-1] / lean[-1]:.3f})", flush=True)
    ratios = [k / l for k, l in zip(kit, lean)]
    print(json.dumps({"lean_rows_per_s": [round(v) for v in lean], "learner_rows_per_s": [round(v) for v in kit],
                      "ratio_per_round": [round(v, 3) for v in ratios], "ratio_median": round(statistics.median(ratios), 3),
                      "ratio_of_best": round(max(kit) / max(lean), 3)}))


if __name__ == "__main__":
    main()
