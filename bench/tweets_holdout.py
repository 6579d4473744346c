"""Disaster Tweets: the honest CV against a held-out score no run has seen.

    python bench/tweets_holdout.py --data ../shared/data/nlp-getting-started --seeds 42,0,1 \
        --recipes tfidf,sentence_vectors > /tmp/tweets_holdout.log 2>&1

A share of the labelled tweets (``--holdout``, default 15 %, drawn once with ``--split-seed``, stratified by the
target) is set aside. The rest becomes a competition folder (train.csv, test.csv = the held-out tweets without
their labels, sample_submission.csv), and ``kitbox.run`` trains on it exactly as ``submit.py disaster-tweets``
does (``--recipes`` and ``--set`` as on the command line). The submission's labels are then scored against the
held-out labels, which nothing in the run saw or was tuned on.

Per recipe it also prints the OOF F1 at the recipe's own cut and the held-out F1 of the recipe's test
predictions (the mean of its fold models) at that cut. One JSON line per seed, then mean +- std.
"""
import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.model_selection import train_test_split

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # `competitions` lives beside `kitbox` in the repo
from kitbox import run
from kitbox.pipeline.config import parse_sets
from seeds import mean_std  # bench/seeds.py, beside this script
from kitbox.metrics import best_f1_cut, f1_at_cuts


def make_split(data: Path, out: Path, share: float, seed: int) -> pd.DataFrame:
    """Write the competition folder without the held-out tweets; return the held-out rows with their labels."""
    train = pd.read_csv(data / "train.csv")
    keep, held = train_test_split(train, test_size=share, random_state=seed, stratify=train["target"])
    out.mkdir(parents=True, exist_ok=True)
    keep.to_csv(out / "train.csv", index=False)
    held.drop(columns="target").to_csv(out / "test.csv", index=False)
    held[["id"]].assign(target=0).to_csv(out / "sample_submission.csv", index=False)
    return held.reset_index(drop=True)


def recipe_lines(run_dir: Path, recipes: list[str], y_train: np.ndarray, y_held: np.ndarray) -> dict:
    """Each recipe's OOF F1 at its own cut (chosen on that OOF) and its test mean's held-out F1 at that cut."""
    lines = {}
    for name in recipes:
        folds = sorted(p for p in run_dir.glob(f"{name}/*/fold*/oof.npy")  # the first round's (not pseudo-labelled)
                       if "pseudo_label" not in json.loads((p.parents[1] / "config.json").read_text()))
        if not folds:
            continue
        oof = np.full(len(y_train), np.nan)
        tests = []
        for path in folds:
            oof[np.load(path.parent / "valid_idx.npy")] = np.asarray(np.load(path), dtype=float).ravel()
            tests.append(np.asarray(np.load(path.parent / "test.npy"), dtype=float).ravel())
        cut, f1 = best_f1_cut(y_train, oof)
        test = np.mean(tests, 0)
        lines[name] = dict(oof_f1=round(f1, 5), cut=cut, held_f1=round(float(f1_at_cuts(y_held, test, [cut])[0]), 5),
                           oof_positive=round(float((oof >= cut).mean()), 4),
                           held_positive=round(float((test >= cut).mean()), 4))
    return lines


def held_score(submission: Path, held: pd.DataFrame) -> float:
    """F1 of a submission's labels on the held-out tweets."""
    sub = pd.read_csv(submission).set_index("id").loc[held["id"], "target"].to_numpy()
    y_held = held["target"].to_numpy()
    tp = int(((sub == 1) & (y_held == 1)).sum())
    return 2 * tp / max(int(sub.sum()) + int(y_held.sum()), 1)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, required=True, help="the Kaggle folder with the labelled train.csv")
    parser.add_argument("--holdout", type=float, default=0.15)
    parser.add_argument("--split-seed", type=int, default=0)
    parser.add_argument("--seeds", default="42")
    parser.add_argument("--recipes", default=None, help="comma-separated (default: the competition's defaults)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--competition", default="disaster-tweets", help="slug or adapter path, as for submit.py")
    parser.add_argument("--work", type=Path, default=Path("/tmp/tweets_holdout"))
    parser.add_argument("--time-limit", type=float, default=None, metavar="MINUTES", help="as submit.py's")
    parser.add_argument("--pseudo-label", type=float, default=None, metavar="CONFIDENCE",
                        help="also score the pseudo-labelled round (the first round's figures stay in the line)")
    args = parser.parse_args()
    folder = args.work / f"data-split{args.split_seed}"
    held = make_split(args.data, folder, args.holdout, args.split_seed)
    y_train = pd.read_csv(folder / "train.csv")["target"].to_numpy()
    y_held = held["target"].to_numpy()
    rows = []
    for seed in [int(s) for s in args.seeds.split(",")]:
        run_dir = args.work / f"runs-split{args.split_seed}-seed{seed}"
        start = time.time()
        report = run(args.competition, data=folder, seed=seed, run_dir=run_dir, out=run_dir / "submission.csv",
                     recipes=args.recipes.split(",") if args.recipes else None, options=parse_sets(args.set),
                     pseudo_label=args.pseudo_label, time_limit=args.time_limit, log=lambda *a, **k: None)
        first = report.pseudo["first_submission"] if report.pseudo else report.submission
        line = dict(seed=seed, split_seed=args.split_seed, train_rows=len(y_train), held_rows=len(y_held),
                    cv_in_sample=round(report.blend["score"], 5), cv_honest=round(report.blend["score_honest"], 5),
                    held_f1=round(held_score(first, held), 5), weights=report.blend["weights"],
                    decided=report.blend.get("decided"), seconds=round(time.time() - start, 1),
                    recipes=recipe_lines(run_dir, list(report.recipes), y_train, y_held))
        if args.time_limit is not None:
            line["blended"] = report.blend["recipes"]
            line["time_notes"] = [n for n in report.notes if "left out" in n or "folds' models" in n]
        if report.pseudo:  # cv_honest above is the first round's; these are the pseudo-labelled round's
            line["cv_honest"] = round(report.pseudo["honest_before"], 5)
            line["pseudo"] = dict(cv_honest=round(report.pseudo["honest_after"], 5), chosen=report.pseudo["wins"],
                                  held_f1=round(held_score(report.pseudo["pseudo_submission"], held), 5))
        rows.append(line)
        print(json.dumps(line, default=str), flush=True)
    for key in ("cv_honest", "held_f1"):
        values = [r[key] for r in rows]
        print(f"{key}: {mean_std(values)} (n={len(values)})")
        if all("pseudo" in r for r in rows):
            print(f"  pseudo-labelled round {key}: {mean_std(r['pseudo'][key] for r in rows)}")
    gaps = [r["cv_honest"] - r["held_f1"] for r in rows]
    print(f"gap honest - held-out: {mean_std(gaps)}")


if __name__ == "__main__":
    main()
