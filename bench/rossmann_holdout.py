"""Rossmann holdout figures of single recipes and their blend: RMSPE, seconds, CPU seconds and peak memory, over a
few seeds, on this machine.

    nohup python bench/rossmann_holdout.py --data ../shared/data/rossmann-store-sales --recipes lightgbm \
        --seeds 0,1,2 --period tune --set lr=0.1 > /tmp/rossmann_holdout.log 2>&1 &

``--period tune`` validates on the six weeks BEFORE the holdout (training on the rows before those), ``tune-year``
on the holdout's weeks a year earlier (the same season): choices are made there, so the holdout (``--period
holdout``, the last six weeks of train, what ``submit.py`` reports) is never tuned on. Each recipe runs exactly
as ``submit.py rossmann`` runs it (same load, split, recipe code and option defaults; ``--set`` as on the command
line), without the refit. One JSON line per recipe and seed, then mean +- std per recipe; ``--blend`` adds the
pipeline's blend of the recipes found in ``--run-dir``.
"""
import argparse
import json
import resource
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # `competitions` lives beside `kitbox` in the repo
from competitions.rossmann import Rossmann
from kitbox.pipeline.config import parse_sets
from seeds import mean_std  # bench/seeds.py, beside this script
from kitbox.adapt.contract import FoldContext, RunSettings
from kitbox.adapt.options import resolve_options


def peak_gb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2  # Linux reports KiB


def cpu_seconds() -> float:
    """CPU time of this process, all threads: on a shared machine a steadier measure of the work than the wall clock
    (with 2 threads an idle machine takes about half of it, less what the threads wait on each other)."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def load(comp: Rossmann, data_dir, period: str, store_share: float):
    data = comp.load(data_dir or comp.sample_dir)
    if store_share < 1:  # a random share of the stores (seed 0), all their days: quicker runs for choosing features
        stores = data.train["Store"].unique()
        keep = np.random.default_rng(0).choice(stores, int(len(stores) * store_share), replace=False)
        data.train = data.train[data.train["Store"].isin(keep)].reset_index(drop=True)
    if period == "tune":  # drop the holdout: the split then takes the six weeks before it
        data.train = data.train[data.train["Date"] < comp.holdout_start(data)].reset_index(drop=True)
    elif period == "tune-year":  # end a year (52 weeks: same weekdays) before train ends: the holdout's season
        end = data.train["Date"].max() - pd.Timedelta(weeks=52)
        data.train = data.train[data.train["Date"] <= end].reset_index(drop=True)
    return data


def run_one(comp, data, name, recipe, options, seed: int, run_dir: Path, device, progress: bool) -> dict:
    folds = comp.split(data, 1, seed)
    y = comp.targets(data)
    valid_idx, train_idx = np.flatnonzero(folds == 0), np.flatnonzero(folds != 0)
    fold_dir = run_dir / name / f"seed{seed}" / "fold0"
    fold_dir.mkdir(parents=True, exist_ok=True)
    ctx = FoldContext(0, train_idx, valid_idx, data, y, fold_dir, run_dir / name / "shared", seed=seed,
                      options=options, settings=RunSettings(progress=progress, device=device, n_folds=1),
                      inputs={dep: run_dir / dep / f"seed{seed}" / "fold0" for dep in recipe.needs})
    start, cpu_start = time.time(), cpu_seconds()
    result = recipe(ctx)
    np.save(fold_dir / "oof.npy", result.oof)
    half = np.random.default_rng(seed).permutation(len(valid_idx)) % 2  # the RMSPE factor, chosen on the other half
    scaled = result.oof.copy()
    for h in (0, 1):
        decided = comp.decide(result.oof[half != h], y[valid_idx][half != h])
        scaled[half == h] = comp.apply(result.oof[half == h], decided)
    return dict(recipe=name, seed=seed, rmspe=round(comp.score(y[valid_idx], result.oof), 5),
                rmspe_scaled=round(comp.score(y[valid_idx], scaled), 5), seconds=round(time.time() - start, 1),
                cpu_seconds=round(cpu_seconds() - cpu_start, 1),
                peak_gb=round(peak_gb(), 2), train_rows=len(train_idx), valid_rows=len(valid_idx),
                valid_from=str(data.train["Date"].iloc[valid_idx].min().date()), info=result.info)


def blend_line(comp, data, run_dir: Path, seed: int) -> dict:
    """The pipeline's blend of every recipe with predictions for this seed in ``run_dir``: Caruana weights and the
    RMSPE factor chosen on the holdout rows (in-sample), and the same chosen on one random half, scored on the other."""
    from kitbox.pipeline import ensemble

    y = comp.targets(data)[comp.split(data, 1, seed) == 0]
    oofs = {p.parts[-4]: np.load(p) for p in sorted(run_dir.glob(f"*/seed{seed}/fold0/oof.npy"))}
    fitted = ensemble.fit_blend(oofs, y, comp.metric)
    decided = comp.decide(ensemble.apply_blend(fitted, oofs), y)
    honest = ensemble.nested_predictions(oofs, y, ensemble.holdout_groups(np.zeros(len(y)), seed), comp.metric,
                                         comp.decide, comp.apply)
    return dict(blend=sorted(oofs), seed=seed, weights={k: round(v, 3) for k, v in fitted.weights.items()},
                rmspe=round(comp.score(y, comp.apply(ensemble.apply_blend(fitted, oofs), decided)), 5),
                rmspe_honest=round(comp.score(y, honest), 5), scale=round(decided["scale"], 4))


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=None, help="Kaggle folder (default: the embedded sample)")
    parser.add_argument("--recipes", default="lightgbm", help="comma-separated recipe names, in order: a recipe's "
                        "needs come before it, or have finished earlier in --run-dir with the same seed")
    parser.add_argument("--period", choices=("tune", "tune-year", "holdout"), default="tune")
    parser.add_argument("--seeds", default="0")
    parser.add_argument("--store-share", type=float, default=1.0, help="train and validate on this share of stores")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="recipe option, as in submit.py")
    parser.add_argument("--run-dir", type=Path, default=Path("/tmp/rossmann_holdout"))
    parser.add_argument("--threads", type=int, default=2, help="torch threads")
    parser.add_argument("--device", default=None)
    parser.add_argument("--progress", action="store_true", help="progress bars and LightGBM's validation loss")
    parser.add_argument("--blend", action="store_true", help="then blend every recipe found in --run-dir, per seed")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    comp = Rossmann()
    start = time.time()
    data = load(comp, args.data, args.period, args.store_share)
    print(f"load {time.time() - start:.1f}s, {len(data.train)} train rows, peak {peak_gb():.2f} GB", flush=True)
    available = comp.recipes()
    recipes = {name: available[name] for name in args.recipes.split(",") if name}  # needs: before, or in --run-dir
    options = resolve_options(recipes, parse_sets(args.set))
    scores = {}
    for seed in [int(s) for s in args.seeds.split(",")]:
        for name, recipe in recipes.items():
            line = run_one(comp, data, name, recipe, options[name], seed, args.run_dir, args.device, args.progress)
            scores.setdefault(name, []).append((line["rmspe"], line["rmspe_scaled"], line["seconds"]))
            print(json.dumps(line, default=str), flush=True)
    for seed in [int(s) for s in args.seeds.split(",")] if args.blend else []:
        print(json.dumps(blend_line(comp, data, args.run_dir, seed)), flush=True)
    for name, rows in scores.items():
        raw, scaled, secs = zip(*rows)
        print(f"{name}: rmspe {mean_std(raw)}, scaled {mean_std(scaled)}, {statistics.mean(secs):.0f} s per run, "
              f"n={len(raw)} ({args.period}); "
              f"options {json.dumps(options[name].__dict__)}", flush=True)


if __name__ == "__main__":
    main()
