"""Fold schemes. A fold assignment is an int array, one fold id per training row; ``-1`` marks rows that are
only ever trained on (e.g. everything before a time holdout). Fold ``k`` validates on the rows with id ``k`` and
trains on all other rows. Every scheme is a scikit-learn splitter (or iterative-stratification's) turned into
that array, or a cut in time."""
from __future__ import annotations

import numpy as np
import pandas as pd


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


def time_holdouts(dates, n_periods: int, days: int) -> np.ndarray:
    """``n_periods`` holdouts of ``days`` days each, back from the newest date: fold 0 the latest, fold 1 the one
    before it...; older rows ``-1``. With ``Competition.forward_folds`` each fold trains only on the days before
    it, so every fold is scored as the test period will be: a model of the past predicting the days after it."""
    dates = pd.to_datetime(pd.Series(dates)).to_numpy()
    back = (dates.max() - dates) // np.timedelta64(1, "D") // days  # 0 for the newest `days` days, 1 before...
    folds = np.where(back < n_periods, back, -1).astype(np.int64)
    if (folds == -1).sum() == 0 or len(np.unique(folds[folds >= 0])) < n_periods:
        raise ValueError(f"time_holdouts: {n_periods} periods of {days} days leave no older rows to train the "
                         f"earliest one on ({pd.Timestamp(dates.min()).date()} .. {pd.Timestamp(dates.max()).date()})")
    return folds


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


def make_folds(split, n_rows: int) -> np.ndarray:
    """``split()`` (the adapter's fold assignment) checked: one id per training row, 0..K-1 with no gaps."""
    return check_folds(split(), n_rows)
