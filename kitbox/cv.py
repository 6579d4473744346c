"""Cross-validation: fold schemes, and the fold runner that trains each recipe on each fold and keeps
out-of-fold (OOF) and test predictions on disk one finished fold at a time, so a killed run resumes.

A fold assignment is an int array, one fold id per training row; ``-1`` marks rows that are only ever
trained on (e.g. everything before a time holdout). Fold ``k`` validates on the rows with id ``k`` and
trains on all other rows.
"""
from __future__ import annotations

import gc
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd

from kitbox.competition import CompetitionData, FoldContext, FoldResult, Recipe
from kitbox.ensemble import RANK_METRICS, fold_mean, snapshot_mean
from kitbox.metrics import Metric, get_metric
from kitbox.runs import load_npy, read_json, save_npy, write_json

# ---------------------------------------------------------------------------------------------- fold schemes


def _from_splitter(splitter, n_rows: int, y=None, groups=None) -> np.ndarray:
    folds = np.full(n_rows, -1, dtype=np.int64)
    for k, (_, valid_idx) in enumerate(splitter.split(np.zeros((n_rows, 1)), y, groups)):
        folds[valid_idx] = k
    return folds


def kfold(n_rows: int, n_folds: int = 5, seed: int = 42) -> np.ndarray:
    from sklearn.model_selection import KFold

    return _from_splitter(KFold(n_folds, shuffle=True, random_state=seed), n_rows)


def stratified_kfold(y, n_folds: int = 5, seed: int = 42) -> np.ndarray:
    from sklearn.model_selection import StratifiedKFold

    y = np.asarray(y)
    return _from_splitter(StratifiedKFold(n_folds, shuffle=True, random_state=seed), len(y), y)


def group_kfold(groups, n_folds: int = 5, seed: int = 42) -> np.ndarray:
    """Every row of a group (a store, a patient, a photographer) lands in the same fold."""
    from sklearn.model_selection import GroupKFold

    groups = np.asarray(groups)
    return _from_splitter(GroupKFold(n_folds, shuffle=True, random_state=seed), len(groups), groups=groups)


def multilabel_stratified_kfold(y, n_folds: int = 5, seed: int = 42) -> np.ndarray:
    """Folds that keep each label's frequency, for 0/1 targets of shape (n, labels) (iterstrat)."""
    from iterstrat.ml_stratifiers import MultilabelStratifiedKFold

    y = np.asarray(y)
    return _from_splitter(MultilabelStratifiedKFold(n_folds, shuffle=True, random_state=seed), len(y), y)


def time_holdout(dates, valid_period: str | None = None, cutoff=None, valid_frac: float | None = None) -> np.ndarray:
    """One fold (id 0) of the latest rows, the rest ``-1``: like Kaggle's test period follows train.

    Say where validation starts with ``cutoff`` (rows on or after it), ``valid_period`` (the last
    ``"42D"`` before and including the newest date) or ``valid_frac`` (about that share of rows).
    """
    dates = pd.to_datetime(pd.Series(dates)).to_numpy()
    if sum(x is not None for x in (valid_period, cutoff, valid_frac)) != 1:
        raise ValueError("time_holdout: give exactly one of valid_period, cutoff, valid_frac")
    if valid_period is not None:
        valid = dates > dates.max() - pd.Timedelta(valid_period).to_timedelta64()
    elif cutoff is not None:
        valid = dates >= np.datetime64(pd.Timestamp(cutoff))
    else:
        valid = dates >= np.quantile(dates.astype("int64"), 1 - valid_frac).astype(dates.dtype)
    if valid.all() or not valid.any():
        raise ValueError(f"time_holdout: the holdout has {valid.sum()} of {len(valid)} rows; choose another cutoff")
    return np.where(valid, 0, -1).astype(np.int64)


def time_blocks(dates, n_folds: int = 5) -> np.ndarray:
    """Contiguous periods of about equal row counts as folds; all rows of one date share a fold."""
    dates = pd.to_datetime(pd.Series(dates))
    per_date = dates.value_counts().sort_index()
    rows_before = per_date.cumsum() - per_date
    block = (rows_before.to_numpy() * n_folds // len(dates)).astype(np.int64)
    return dates.map(dict(zip(per_date.index, block))).to_numpy(dtype=np.int64)


def check_folds(folds, n_rows: int) -> np.ndarray:
    """Fold ids as int64, one per row, numbered 0..K-1 with every fold non-empty."""
    folds = np.asarray(folds)
    if folds.shape != (n_rows,):
        raise ValueError(f"fold assignment has shape {folds.shape}, expected one fold id per training row ({n_rows},)")
    if not np.issubdtype(folds.dtype, np.integer):
        raise ValueError(f"fold ids must be integers, got dtype {folds.dtype}")
    ids = np.unique(folds[folds >= 0])
    if len(ids) == 0 or not np.array_equal(ids, np.arange(len(ids))) or (folds < -1).any():
        raise ValueError(f"fold ids must be -1 or 0..K-1 with no gaps, got {np.unique(folds).tolist()}")
    return folds.astype(np.int64)


def n_folds_of(folds: np.ndarray) -> int:
    return int(folds.max()) + 1


def load_or_make_folds(run_dir, n_rows: int, make: Callable[[], np.ndarray]) -> tuple[np.ndarray, bool]:
    """The run's saved fold assignment (``folds.csv``), or a new one from ``make()`` saved for reruns.

    Returns ``(folds, reused)``. Reusing the saved folds keeps every recipe and every rerun on the
    same validation rows, which is what makes their OOF predictions comparable and blendable.
    """
    path = Path(run_dir) / "folds.csv"
    if path.exists():
        saved = pd.read_csv(path)
        if list(saved.columns) != ["row", "fold"] or len(saved) != n_rows:
            raise ValueError(
                f"{path} assigns folds to {len(saved)} rows but the training data has {n_rows}: the data changed "
                "since this run started. Start over with --fresh, or pick another --run-dir."
            )
        return check_folds(saved["fold"].to_numpy(), n_rows), True
    folds = check_folds(make(), n_rows)
    from kitbox.runs import atomic_write_text

    atomic_write_text(path, pd.DataFrame({"row": np.arange(n_rows), "fold": folds}).to_csv(index=False))
    return folds, False


# ---------------------------------------------------------------------------------------------- fold runner


@dataclass
class FoldRecord:
    """One finished (recipe, fold): its predictions and score, as saved in its folder."""

    fold: int
    valid_idx: np.ndarray
    oof: np.ndarray
    test: np.ndarray  # the fold's test prediction (its snapshots' mean when it kept SGDR snapshots)
    score: float
    seconds: float
    info: dict = field(default_factory=dict)


def fold_dir(run_dir, recipe: str, fold: int) -> Path:
    return Path(run_dir) / recipe / f"fold{fold}"


def is_done(run_dir, recipe: str, fold: int) -> bool:
    # done.json is written last, so its presence means every prediction file of the fold is complete
    return (fold_dir(run_dir, recipe, fold) / "done.json").exists()


def load_fold(run_dir, recipe: str, fold: int, folds: np.ndarray) -> FoldRecord:
    fdir = fold_dir(run_dir, recipe, fold)
    done = read_json(fdir / "done.json")
    valid_idx = load_npy(fdir / "valid_idx.npy")
    if not np.array_equal(valid_idx, np.flatnonzero(folds == fold)):
        raise ValueError(f"{fdir} was trained on other validation rows than fold {fold} of folds.csv; use --fresh")
    return FoldRecord(fold, valid_idx, load_npy(fdir / "oof.npy"), load_npy(fdir / "test.npy"),
                      done["score"], done["seconds"], done.get("info", {}))


def _checked(result, name: str, fold: int, n_valid: int, n_test: int) -> tuple[np.ndarray, np.ndarray, list]:
    where = f"recipe {name!r} fold {fold}"
    if not isinstance(result, FoldResult):
        raise TypeError(f"{where} returned {type(result).__name__}; a recipe must return kitbox.competition.FoldResult")
    oof, test = np.asarray(result.oof), np.asarray(result.test)
    snaps = [np.asarray(s) for s in result.snapshots_test]
    for what, arr, n in [("oof", oof, n_valid), ("test", test, n_test)] + [("snapshot", s, n_test) for s in snaps]:
        if arr.ndim == 0 or len(arr) != n:
            raise ValueError(f"{where}: {what} predictions have shape {arr.shape}, expected {n} rows")
        if np.issubdtype(arr.dtype, np.number) and not np.isfinite(arr).all():
            raise ValueError(f"{where}: {what} predictions contain NaN or inf (did training diverge?)")
    return oof, test, snaps


def run_fold(name: str, recipe: Recipe, fold: int, folds: np.ndarray, data: CompetitionData, y: np.ndarray,
             metric: Metric, run_dir, seed: int = 42, options: dict | None = None, write: bool = True) -> FoldRecord:
    """Train one recipe on one fold and save its predictions; a finished fold is loaded, never retrained.

    ``write=False`` trains without saving: the other ranks of a torchrun job, where only rank 0 writes.
    """
    if is_done(run_dir, name, fold):
        return load_fold(run_dir, name, fold, folds)
    fdir = fold_dir(run_dir, name, fold)
    fdir.mkdir(parents=True, exist_ok=True)
    valid_idx, train_idx = np.flatnonzero(folds == fold), np.flatnonzero(folds != fold)
    ctx = FoldContext(fold=fold, train_idx=train_idx, valid_idx=valid_idx, data=data, fold_dir=fdir,
                      seed=seed, options=dict(options or {}))
    start = time.time()
    result = recipe(ctx)
    gc.collect()  # the recipe's model, optimizer and batches (reference cycles) go now, not during the next fold
    oof, test, snaps = _checked(result, name, fold, len(valid_idx), len(data.test))
    seconds = time.time() - start
    score = float(metric(y[valid_idx], oof))
    test_pred = snapshot_mean(test, snaps)
    info = {**result.info, "snapshots": len(snaps)}
    if not write:
        return FoldRecord(fold, valid_idx, oof, test_pred, score, seconds, info)
    save_npy(fdir / "valid_idx.npy", valid_idx)
    save_npy(fdir / "oof.npy", oof)
    save_npy(fdir / "test.npy", test_pred)
    if snaps:
        save_npy(fdir / "test_final.npy", test)  # the last model alone, to compare with the snapshot mean
    write_json(fdir / "done.json", {"recipe": name, "fold": fold, "score": score, "seconds": seconds,
                                    "n_train": len(train_idx), "n_valid": len(valid_idx), "info": info})
    return FoldRecord(fold, valid_idx, oof, test_pred, score, seconds, info)


@dataclass
class RecipeCV:
    """A recipe's folds: the finished ones and the ones still to run."""

    name: str
    n_rows: int
    records: dict[int, FoldRecord]
    missing: list[int]

    @property
    def complete(self) -> bool:
        return not self.missing

    def oof(self) -> tuple[np.ndarray, np.ndarray]:
        """OOF predictions for every training row (NaN where no finished fold covers it) and the covered-row mask."""
        first = next(iter(self.records.values()))
        full = np.full((self.n_rows,) + first.oof.shape[1:], np.nan)
        mask = np.zeros(self.n_rows, dtype=bool)
        for rec in self.records.values():
            if mask[rec.valid_idx].any():
                raise ValueError(f"recipe {self.name!r}: fold {rec.fold} predicts rows another fold already covers")
            full[rec.valid_idx], mask[rec.valid_idx] = rec.oof, True
        return full, mask

    def test(self, rank: bool = False) -> np.ndarray:
        return fold_mean([rec.test for _, rec in sorted(self.records.items())], rank=rank)

    def fold_scores(self) -> dict[int, float]:
        return {k: rec.score for k, rec in sorted(self.records.items())}


def run_cv(data: CompetitionData, folds: np.ndarray, recipes: dict[str, Recipe], y, metric, run_dir,
           only_folds=None, seed: int = 42, options: dict | None = None, log=print,
           write: bool = True) -> dict[str, RecipeCV]:
    """Run every recipe on every fold (or on ``only_folds``), skipping folds finished in earlier runs."""
    metric = get_metric(metric)
    y = np.asarray(y)
    n_folds = n_folds_of(folds)
    wanted = set(range(n_folds) if only_folds is None else only_folds)
    if wanted - set(range(n_folds)):
        raise ValueError(f"--folds asks for folds {sorted(wanted - set(range(n_folds)))}, the run has 0..{n_folds - 1}")
    results = {}
    for name, recipe in recipes.items():
        records, missing = {}, []
        for fold in range(n_folds):
            tag = f"[{name}] fold {fold + 1}/{n_folds}"
            if is_done(run_dir, name, fold):
                records[fold] = load_fold(run_dir, name, fold, folds)
                log(f"{tag}  {metric.name} {records[fold].score:.5f}  (finished earlier, skipped)")
            elif fold in wanted:
                rec = records[fold] = run_fold(name, recipe, fold, folds, data, y, metric, run_dir, seed, options,
                                               write)
                log(f"{tag}  {metric.name} {rec.score:.5f}  ({rec.seconds:.1f} s)")
            else:
                missing.append(fold)
        results[name] = RecipeCV(name, len(folds), records, missing)
    return results


def cv_report(results: dict[str, RecipeCV], y, metric) -> dict:
    """Per recipe: the score of each finished fold, their mean and std, and the score of all OOF rows together."""
    metric = get_metric(metric)
    report = {}
    for name, res in results.items():
        if not res.records:
            report[name] = {"folds": {}, "missing": res.missing}
            continue
        scores = res.fold_scores()
        oof, mask = res.oof()
        report[name] = {
            "folds": {str(k): s for k, s in scores.items()},
            "mean": float(np.mean(list(scores.values()))),
            "std": float(np.std(list(scores.values()))),
            "oof": float(metric(np.asarray(y)[mask], oof[mask])),
            "oof_rows": int(mask.sum()),
            "missing": res.missing,
            "seconds": float(sum(r.seconds for r in res.records.values())),
        }
    return report


def recipe_test_pred(res: RecipeCV, metric) -> np.ndarray:
    """The recipe's test prediction: the mean of its folds' (rank mean for rank metrics such as AUC)."""
    return res.test(rank=get_metric(metric).name in RANK_METRICS)


def plot_cv(report: dict, metric, path, blend_score: float | None = None) -> Path:
    """A PNG of each recipe's fold scores (dots), their OOF score (bar) and the blend's (dashed line)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    metric = get_metric(metric)
    names = [n for n, r in report.items() if "oof" in r]
    fig, ax = plt.subplots(figsize=(1.6 * len(names) + 2.5, 3.5))
    ax.bar(range(len(names)), [report[n]["oof"] for n in names], color="#9ecae1", label="OOF")
    for i, name in enumerate(names):
        scores = list(report[name]["folds"].values())
        ax.plot([i] * len(scores), scores, "o", color="#08519c", label="folds" if i == 0 else None)
    if blend_score is not None:
        ax.axhline(blend_score, color="#d95f02", ls="--", label=f"blend {blend_score:.5f}")
    scores = [s for n in names for s in report[n]["folds"].values()] + [report[n]["oof"] for n in names]
    spread = (max(scores) - min(scores)) or abs(max(scores)) * 0.01 or 1.0
    ax.set_ylim(min(scores) - spread, max(scores) + spread)  # zoom in: the differences are what matters
    ax.set_xticks(range(len(names)), names)
    ax.set_ylabel(f"{metric.name} ({'higher' if metric.greater_is_better else 'lower'} is better)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
