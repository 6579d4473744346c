"""A LightGBM helper: the gradient-boosted reference a tabular competitor compares the neural net against.

LightGBM is an optional dependency (``pip install kitbox[gbm]``); it is imported only when used.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

LGBM_DEFAULTS = dict(
    objective="regression", learning_rate=0.05, num_leaves=63, min_data_in_leaf=20,
    feature_fraction=0.8, bagging_fraction=0.8, bagging_freq=1, lambda_l2=1.0, verbosity=-1,
)


def _lightgbm():
    try:
        import lightgbm
    except ImportError as err:  # optional dependency: say how to get it
        raise ImportError("the LightGBM recipe needs lightgbm: pip install 'kitbox[gbm]' (or pip install lightgbm)") from err
    return lightgbm


def fit_lightgbm(x_train: pd.DataFrame, y_train, x_valid: pd.DataFrame | None = None, y_valid=None,
                 num_boost_round: int = 1000, params: dict | None = None, seed: int = 42,
                 early_stopping_rounds: int | None = None, categorical: list[str] | str = "auto", threads: int | None = None):
    """Train a booster; with ``x_valid`` it logs the validation loss every 100 rounds (and can stop early).

    Early stopping picks the round count on the validation rows, so the validation score is then optimistic;
    it is off by default.
    """
    lgb = _lightgbm()
    if threads is None:
        # OpenMP threads spin at barriers: on a busy machine small data trains far faster on one thread
        threads = 1 if len(x_train) < 200_000 else 0
    params = {**LGBM_DEFAULTS, **(params or {}), "seed": seed, "num_threads": threads}
    train_set = lgb.Dataset(x_train, label=np.asarray(y_train, dtype=np.float64), categorical_feature=categorical,
                            free_raw_data=True)
    valid_sets, callbacks = [], []
    if x_valid is not None and y_valid is not None:
        valid_sets = [lgb.Dataset(x_valid, label=np.asarray(y_valid, dtype=np.float64), reference=train_set)]
        callbacks.append(lgb.log_evaluation(100))
        if early_stopping_rounds:
            callbacks.append(lgb.early_stopping(early_stopping_rounds, verbose=False))
    return lgb.train(params, train_set, num_boost_round=num_boost_round, valid_sets=valid_sets, callbacks=callbacks)


def predict_lightgbm(booster, x: pd.DataFrame) -> np.ndarray:
    best = getattr(booster, "best_iteration", 0) or None
    return np.asarray(booster.predict(x, num_iteration=best), dtype=np.float64)
