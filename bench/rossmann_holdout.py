"""Full-data Rossmann targets (issue 4): holdout RMSPE of one recipe, wall time and peak memory, on this machine.

    nohup python bench/rossmann_holdout.py --data ../shared/data/rossmann-store-sales --recipes entity_embedding \
        --threads 2 > /tmp/rossmann_holdout.log 2>&1 &

Runs the adapter's recipes on the time holdout exactly as ``submit.py`` would (same load, split and recipe code)
and prints one line per recipe: holdout RMSPE, seconds, and the process's peak resident memory so far.
"""
import argparse
import json
import logging
import resource
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # `competitions` lives beside `kitbox` in the repo
from competitions.rossmann import Rossmann
from kitbox.competition import FoldContext


def peak_gb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2  # Linux reports KiB


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=None, help="Kaggle folder (default: the embedded sample)")
    parser.add_argument("--recipes", default="entity_embedding", help="comma-separated recipe names")
    parser.add_argument("--run-dir", type=Path, default=Path("/tmp/rossmann_holdout"))
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--epochs", type=int, default=None)
    parser.add_argument("--lr", type=float, default=None)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--refit", action="store_true")
    parser.add_argument("--gap-weeks", type=int, default=0,
                        help="also drop this many weeks of train before the holdout: simulates predicting test with a "
                             "model that never saw the last weeks (the refit-or-not question)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    torch.set_num_threads(args.threads)
    comp = Rossmann()
    t0 = time.time()
    data = comp.load(args.data or comp.sample_dir)
    print(f"load {time.time() - t0:.1f}s train rows {len(data.train)} peak {peak_gb():.2f} GB", flush=True)
    folds = comp.split(data, 1, args.seed)
    y = comp.targets(data)
    valid_idx = np.flatnonzero(folds == 0)
    train_idx = np.flatnonzero(folds != 0)
    if args.gap_weeks:
        cutoff = comp.holdout_start(data) - np.timedelta64(7 * args.gap_weeks, "D")
        train_idx = train_idx[data.train["Date"].to_numpy()[train_idx] < cutoff]
    options = {"progress": False, "epochs": args.epochs, "refit": args.refit, "gbm_threads": args.threads}
    if args.lr:
        options["lr"] = args.lr
    for name in args.recipes.split(","):
        t = time.time()
        ctx = FoldContext(0, train_idx, valid_idx, data, args.run_dir / name / "fold0", seed=args.seed, options=options)
        result = comp.recipes()[name](ctx)
        score = comp.score(y[valid_idx], result.oof)
        line = dict(recipe=name, holdout_rmspe=round(score, 5), seconds=round(time.time() - t, 1),
                    peak_gb=round(peak_gb(), 2), train_rows=len(train_idx), valid_rows=len(valid_idx),
                    gap_weeks=args.gap_weeks, info=result.info)
        print(json.dumps(line, default=str), flush=True)
        ctx.fold_dir.mkdir(parents=True, exist_ok=True)  # recipes that save nothing leave no folder
        np.save(ctx.fold_dir / "oof.npy", result.oof)


if __name__ == "__main__":
    main()
