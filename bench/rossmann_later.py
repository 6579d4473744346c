"""Rossmann: the honest holdout figure against a later period no run has seen.

    python bench/rossmann_later.py --data ../shared/data/rossmann-store-sales --seeds 42 > /tmp/rossmann_later.log

The last ``--weeks`` weeks of train.csv (default 6, the test period's length) are cut off and become test.csv
(their Sales and Customers removed, Kaggle's Id column added). ``kitbox.run`` then runs ``submit.py rossmann``
on the rest exactly as a user would: the honest figure comes from its own holdout (the six weeks before the cut),
the refit on every remaining row predicts the cut weeks, and those predictions are scored by RMSPE on the days
with sales, as Kaggle scores the test. Nothing in the run sees or is tuned on the cut weeks. ``--skip-weeks K``
first drops the last K weeks of train.csv, so the same measurement runs on an earlier period (K=6: the later weeks
are the six weeks that were the holdout with K=0), which tells the period-to-period spread of the gap.

Per recipe it prints its holdout RMSPE and its refit's RMSPE on the later weeks (before the blend's factor), then
the blend's in-sample and honest holdout figures and the submission's score on the later weeks.
"""
import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # `competitions` lives beside `kitbox` in the repo
from kitbox import run
from kitbox.metrics import rmspe
from kitbox.pipeline.config import parse_sets
from seeds import mean_std  # bench/seeds.py, beside this script

INPUTS = ["Store", "DayOfWeek", "Date", "Open", "Promo", "StateHoliday", "SchoolHoliday"]


def make_folder(data: Path, out: Path, weeks: int, skip_weeks: int = 0) -> pd.DataFrame:
    """Write train (without the last ``weeks`` weeks), test (those weeks' inputs) and the sample; return the
    later weeks' answers (Id, Sales)."""
    name = "train.csv" if (data / "train.csv").exists() else "train.csv.gz"  # the embedded sample is gzipped
    train = pd.read_csv(data / name, dtype={"StateHoliday": str}, parse_dates=["Date"])
    if skip_weeks:
        train = train[train["Date"] <= train["Date"].max() - pd.Timedelta(days=7 * skip_weeks)]
    cut = train["Date"].max() - pd.Timedelta(days=7 * weeks - 1)
    later = train[train["Date"] >= cut].sort_values(["Date", "Store"]).reset_index(drop=True)
    later.insert(0, "Id", np.arange(1, len(later) + 1))
    folder = out / "rossmann-store-sales"
    folder.mkdir(parents=True, exist_ok=True)
    train[train["Date"] < cut].to_csv(folder / "train.csv", index=False, date_format="%Y-%m-%d")
    later[["Id", *INPUTS]].to_csv(folder / "test.csv", index=False, date_format="%Y-%m-%d")
    later[["Id"]].assign(Sales=0).to_csv(folder / "sample_submission.csv", index=False)
    for other in data.iterdir():  # store.csv, and the external tables where they sit in the same folder
        if not other.name.startswith(("train.", "test.", "sample_submission.")) and not (folder / other.name).exists():
            (folder / other.name).symlink_to(other.resolve())
    external = data.parent / "rossmann-store-sales-external"
    if external.is_dir() and not (out / external.name).exists():
        (out / external.name).symlink_to(external.resolve())
    return later[["Id", "Sales", "Date"]]


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, required=True, help="the Kaggle folder with the full train.csv")
    parser.add_argument("--weeks", type=int, default=6)
    parser.add_argument("--skip-weeks", type=int, default=0, help="drop the data's last K weeks first")
    parser.add_argument("--seeds", default="42")
    parser.add_argument("--recipes", default=None)
    parser.add_argument("--n-folds", type=int, default=None, help="holdout periods (default: the adapter's)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--work", type=Path, default=Path("/tmp/rossmann_later"))
    args = parser.parse_args()
    later = make_folder(args.data, args.work, args.weeks, args.skip_weeks)
    sold = later["Sales"].to_numpy() > 0
    y = later["Sales"].to_numpy()[sold]
    week = ((later["Date"] - later["Date"].min()).dt.days // 7).to_numpy()[sold]
    weeks = [week == w for w in np.unique(week)]  # each week's own score: how much the periods differ
    rows = []
    for seed in [int(s) for s in args.seeds.split(",")]:
        run_dir = args.work / f"runs-seed{seed}"
        start = time.time()
        report = run("rossmann", data=args.work / "rossmann-store-sales", seed=seed, run_dir=run_dir,
                     out=run_dir / "submission.csv", n_folds=args.n_folds,
                     recipes=args.recipes.split(",") if args.recipes else None, options=parse_sets(args.set),
                     log=lambda *a, **k: None)
        sub = pd.read_csv(report.submission).set_index("Id").loc[later["Id"], "Sales"].to_numpy()
        recipes = {}
        for name, scores in report.recipes.items():
            refit = sorted(run_dir.glob(f"{name}/*/refit/test.npy"))
            recipes[name] = dict(holdout=round(scores["oof"], 5),
                                 periods={k: round(v, 5) for k, v in scores["folds"].items()})
            if refit:  # the test rows are in test.csv's order, which is later's order
                recipes[name]["later"] = round(rmspe(y, np.load(refit[-1]).ravel()[sold]), 5)
        line = dict(seed=seed, weeks=args.weeks, later_from=str(later["Date"].min().date()),
                    later_to=str(later["Date"].max().date()),
                    holdout_in_sample=round(report.blend["score"], 5),
                    holdout_honest=round(report.blend["score_honest"], 5),
                    later=round(rmspe(y, sub[sold]), 5),
                    later_weekly=[round(rmspe(y[w], sub[sold][w]), 5) for w in weeks],
                    weights=report.blend["weights"],
                    decided=report.blend.get("decided"), recipes=recipes, seconds=round(time.time() - start, 1))
        rows.append(line)
        print(json.dumps(line, default=str), flush=True)
    for key in ("holdout_honest", "later"):
        values = [r[key] for r in rows]
        print(f"{key}: {mean_std(values)} (n={len(values)})")


if __name__ == "__main__":
    main()
