"""Inference only on real data: a default training run, then its saved models on a swapped-in test set.

    python bench/predict_only.py rossmann --data ../shared/data/rossmann-store-sales > /tmp/predict_only.log 2>&1

1. ``kitbox.run`` trains the competition's default recipes on a copy of DATA (``--recipes``, ``--set`` as on the
   command line): wall time T_train, the submission.
2. ``--predict-only`` on the same copy: its submission must equal the run's byte for byte; wall time T_predict.
3. A "hidden" test set, as a code competition swaps in: the same test rows shuffled, with new ids (train files
   copied with their time stamps, so they are the same files to the fingerprint). ``--predict-only`` on it: every
   row's prediction must equal the run's for that row; wall time.
4. The training command again on the hidden copy: its folds are kept (nothing trains; each fold's saved model
   predicts the new rows); its submission must equal step 3's; wall time.

Prints one JSON line with the times, their ratios to T_train, and the run folder's size.
"""
import argparse
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # `competitions` lives beside `kitbox` in the repo
from kitbox import run
from kitbox.adapt.registry import get_competition
from kitbox.pipeline.config import parse_sets

ID_SHIFT = 10_000_000  # the hidden set's ids: the public ids moved out of their range


def hidden_copy(data: Path, dest: Path, comp, seed: int) -> np.ndarray:
    """DATA with its test rows shuffled and given new ids (the sample follows); returns the permutation."""
    shutil.copytree(data, dest, copy_function=shutil.copy2)  # time stamps kept: the same training files
    test_file, sample_file = dest / comp.test_file, dest / comp.sample_file
    test, sample = pd.read_csv(test_file, dtype=str), pd.read_csv(sample_file, dtype=str)
    id_col = sample.columns[0]
    order = np.random.default_rng(seed).permutation(len(test))
    test = test.iloc[order].reset_index(drop=True)
    sample = sample.set_index(id_col).loc[test[id_col]].reset_index()  # the sample's rows in the new order
    test[id_col] = (test[id_col].astype(int) + ID_SHIFT).astype(str)
    sample[id_col] = test[id_col]
    test.to_csv(test_file, index=False)
    sample.to_csv(sample_file, index=False)
    return order


def timed(**settings):
    start = time.time()
    report = run(**settings, log=lambda *a: print(*a, flush=True))
    return report, time.time() - start


def folder_size(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("competition")
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--recipes", default=None)
    parser.add_argument("--set", dest="options", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--seed", type=int, default=42)
    args = parser.parse_args()
    comp = get_competition(args.competition)
    work = Path(tempfile.mkdtemp(prefix="predict-only-"))
    public, hidden, run_dir = work / "public", work / "hidden", work / "run"
    shutil.copytree(args.data, public, copy_function=shutil.copy2)
    sibling = args.data.parent / f"{args.data.name}-external"  # Rossmann's external tables sit beside the data
    if sibling.is_dir():
        shutil.copytree(sibling, work / sibling.name, copy_function=shutil.copy2)
    order = hidden_copy(public, hidden, comp, args.seed)
    common = dict(competition=args.competition, run_dir=run_dir, seed=args.seed, recipes=args.recipes,
                  options=parse_sets(args.options))

    trained, t_train = timed(data=public, out=work / "trained.csv", **common)
    again, t_again = timed(competition=args.competition, data=public, predict_only=True, models=run_dir,
                           out=work / "again.csv")
    assert again.submission.read_bytes() == trained.submission.read_bytes(), "predict-only differs from the run"
    swapped, t_hidden = timed(competition=args.competition, data=hidden, predict_only=True, models=run_dir,
                              out=work / "hidden.csv")
    first = pd.read_csv(trained.submission, dtype=str)
    second = pd.read_csv(swapped.submission, dtype=str)
    id_col = first.columns[0]
    expected = first.set_index(id_col).loc[second[id_col].map(lambda i: str(int(i) - ID_SHIFT))]
    same_rows = bool((expected.to_numpy() == second.drop(columns=id_col).to_numpy()).all())
    assert same_rows, "the hidden set's predictions are not the run's for the same rows"
    rerun, t_rerun = timed(data=hidden, out=work / "rerun.csv", **common)
    assert rerun.submission.read_bytes() == swapped.submission.read_bytes(), "the rerun differs from predict-only"
    print(json.dumps({
        "competition": comp.slug, "recipes": list(trained.recipes), "seed": args.seed, "test_rows": len(order),
        "honest": trained.blend["score_honest"], "train_s": round(t_train, 1),
        "predict_only_s": round(t_again, 1), "hidden_predict_only_s": round(t_hidden, 1),
        "rerun_with_hidden_test_s": round(t_rerun, 1), "predict_over_train": round(t_hidden / t_train, 4),
        "rerun_over_train": round(t_rerun / t_train, 4), "same_bytes": True, "same_rows_after_shuffle": same_rows,
        "run_folder_mb": round(folder_size(run_dir) / 1e6, 1),
        "saved_models_mb": round(sum(p.stat().st_size for p in run_dir.rglob("predictor.pt")) / 1e6, 1),
    }))


if __name__ == "__main__":
    main()
