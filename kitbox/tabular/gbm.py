"""LightGBM helpers: frames from a table's columns, the objective from the task, training with early stopping.

LightGBM is an optional dependency (``pip install kitbox[gbm]``); it is imported only when used.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

LGBM_DEFAULTS = dict(
    objective="regression", learning_rate=0.05, num_leaves=63, min_data_in_leaf=20,
    feature_fraction=0.8, bagging_fraction=0.8, bagging_freq=1, lambda_l2=1.0, verbosity=-1,
)


def lightgbm_module():
    try:
        import lightgbm
    except ImportError as err:  # optional dependency: say how to get it
        raise ImportError("the LightGBM recipe needs lightgbm: pip install 'kitbox[gbm]' (or pip install lightgbm)") from err
    return lightgbm


def objective(task: str, n_classes: int = 0) -> dict:
    """LightGBM's objective for a kitbox task (multilabel: one binary booster per label, so ``binary``)."""
    if task == "regression":
        return {"objective": "regression"}
    if task in ("binary", "multilabel"):
        return {"objective": "binary"}
    if task == "multiclass":
        return {"objective": "multiclass", "num_class": n_classes}
    raise ValueError(f"no LightGBM objective for task {task!r}")


def category_levels(train: pd.DataFrame, cat_names: list[str]) -> dict[str, list]:
    """Each categorical column's values in the training rows, sorted (their codes are positions in this list)."""
    levels = {}
    for c in cat_names:
        values = pd.unique(train[c].dropna())
        try:
            levels[c] = sorted(values)
        except TypeError:  # mixed types: any stable order will do
            levels[c] = sorted(values, key=str)
    return levels


def gbm_frame(df: pd.DataFrame, levels: dict[str, list], cont_names: list[str]) -> pd.DataFrame:
    """Categorical columns as codes (sorted order, so a code keeps a number's order; unseen or missing: NaN) and
    continuous columns as they are (NaN stays NaN: trees route it on their own), all float32."""
    cols = {}
    for c, values in levels.items():
        codes = pd.Index(values, dtype=object).get_indexer(df[c].astype(object))  # -1: unseen or missing
        cols[c] = np.where(codes < 0, np.nan, codes).astype(np.float32)
    for c in cont_names:
        cols[c] = pd.to_numeric(df[c], errors="raise").to_numpy(np.float32)
    return pd.DataFrame(cols, index=df.index)


def stack_columns(blocks: list[pd.DataFrame]) -> np.ndarray:
    """One row-major float32 matrix from same-length frames, filled a block at a time: LightGBM reads it without a
    copy of its own, and no concatenated frame sits beside it (on a million rows each copy is most of a GB)."""
    out = np.empty((len(blocks[0]), sum(b.shape[1] for b in blocks)), dtype=np.float32)
    j = 0
    for block in blocks:
        out[:, j:j + block.shape[1]] = block.to_numpy(np.float32)
        j += block.shape[1]
    return out


def fit_lightgbm(x_train, y_train, x_valid=None, y_valid=None, num_boost_round: int = 1000, params: dict | None = None,
                 seed: int = 42, early_stopping_rounds: int | None = None, categorical: list | str = "auto",
                 threads: int | None = None, log_every: int = 0, feature_names: list[str] | str = "auto"):
    """Train a booster on frames or matrices; with ``x_valid`` it can stop early (``early_stopping_rounds`` without
    improvement) and log the validation loss every ``log_every`` rounds. ``booster.best_iteration`` is then the
    round count. ``categorical``: columns (names or positions) split as sets rather than by thresholds.
    """
    lgb = lightgbm_module()
    if threads is None:
        # OpenMP threads spin at barriers: on a busy machine small data trains far faster on one thread
        threads = 1 if len(x_train) < 200_000 else 0
    params = {**LGBM_DEFAULTS, **(params or {}), "seed": seed, "num_threads": threads, "deterministic": True}
    train_set = lgb.Dataset(x_train, label=np.asarray(y_train, dtype=np.float64), categorical_feature=categorical,
                            feature_name=feature_names, free_raw_data=True)
    valid_sets, callbacks = [], []
    if x_valid is not None and y_valid is not None and len(x_valid):
        valid_sets = [lgb.Dataset(x_valid, label=np.asarray(y_valid, dtype=np.float64), reference=train_set)]
        if log_every:
            callbacks.append(lgb.log_evaluation(log_every))
        if early_stopping_rounds:
            callbacks.append(lgb.early_stopping(early_stopping_rounds, verbose=False))
    return lgb.train(params, train_set, num_boost_round=num_boost_round, valid_sets=valid_sets, callbacks=callbacks)


def predict_lightgbm(booster, x) -> np.ndarray:
    best = getattr(booster, "best_iteration", 0) or None
    return np.asarray(booster.predict(x, num_iteration=best), dtype=np.float64)


def permutation_importance(booster, x: np.ndarray, y: np.ndarray, names: list[str], task: str, seed: int = 0,
                           max_rows: int = 2000) -> dict[str, float]:
    """How much the booster's own loss (squared error for regression, log loss otherwise) grows on held-out rows
    when one column's values are shuffled among them (at most ``max_rows`` random rows, one shuffle per column):
    the columns the predictions lean on, largest first. Unlike split gain it is measured on rows the trees did not
    fit, so a column that only helped memorise the training rows scores near 0 (or below)."""
    from kitbox.metrics import log_loss, rmse

    rng = np.random.default_rng(seed)
    rows = np.sort(rng.choice(len(x), min(len(x), max_rows), replace=False))
    x, y = np.array(x[rows], dtype=np.float32), np.asarray(y)[rows]
    loss = (lambda pred: rmse(y, pred) ** 2) if task == "regression" else (lambda pred: log_loss(y, pred))
    base = loss(predict_lightgbm(booster, x))
    found = {}
    for j, name in enumerate(names):
        kept = x[:, j].copy()
        x[:, j] = rng.permutation(kept)
        found[name] = loss(predict_lightgbm(booster, x)) - base
        x[:, j] = kept
    return dict(sorted(found.items(), key=lambda kv: -kv[1]))
