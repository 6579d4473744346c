"""Competition metrics as plain functions of numpy arrays: ``metric(y_true, y_pred) -> float``.

Each metric carries ``greater_is_better`` so the fold runner and the ensembler know which way
is up. Look metrics up by name with ``get_metric("rmspe")``.
"""
from __future__ import annotations

from typing import Callable

import numpy as np
from sklearn import metrics as skm


def _as_float(y) -> np.ndarray:
    return np.asarray(y, dtype=np.float64)


def rmse(y_true, y_pred) -> float:
    y_true, y_pred = _as_float(y_true), _as_float(y_pred)
    return float(np.sqrt(np.mean((y_true - y_pred) ** 2)))


def rmspe(y_true, y_pred) -> float:
    """Root mean squared percentage error; rows whose true value is 0 are ignored (Kaggle's Rossmann rule)."""
    y_true, y_pred = _as_float(y_true).ravel(), _as_float(y_pred).ravel()
    keep = y_true != 0
    if not keep.any():
        raise ValueError("rmspe: every true value is 0, so the metric is undefined")
    pct = (y_true[keep] - y_pred[keep]) / y_true[keep]
    return float(np.sqrt(np.mean(pct**2)))


def log_loss(y_true, y_pred, eps: float = 1e-15) -> float:
    """Binary log loss for P(class 1) in ``y_pred``; multi-class when ``y_pred`` is (n, classes)."""
    y_pred = _as_float(y_pred)
    y_true = np.asarray(y_true)
    if y_pred.ndim == 2 and y_pred.shape[1] > 1:
        return float(skm.log_loss(y_true, np.clip(y_pred, eps, 1 - eps), labels=np.arange(y_pred.shape[1])))
    p = np.clip(y_pred.ravel(), eps, 1 - eps)
    t = _as_float(y_true).ravel()
    return float(-np.mean(t * np.log(p) + (1 - t) * np.log(1 - p)))


def _labels(y_pred, threshold: float = 0.5) -> np.ndarray:
    """Turn scores into labels: argmax for (n, classes), threshold for a single probability column."""
    y_pred = np.asarray(y_pred)
    if y_pred.ndim == 2 and y_pred.shape[1] > 1:
        return y_pred.argmax(1)
    if np.issubdtype(y_pred.dtype, np.floating):
        return (y_pred.ravel() >= threshold).astype(np.int64)
    return y_pred.ravel()


def accuracy(y_true, y_pred) -> float:
    return float(np.mean(_labels(y_pred) == np.asarray(y_true).ravel()))


def f1(y_true, y_pred, threshold: float = 0.5) -> float:
    return float(skm.f1_score(np.asarray(y_true).ravel(), _labels(y_pred, threshold)))


F1_CUTS = np.round(np.linspace(0.05, 0.95, 91), 2)  # the probability cuts an OOF-tuned F1 threshold is chosen from


def f1_at_cuts(y_true, prob, cuts=F1_CUTS) -> np.ndarray:
    """F1 of ``prob >= cut`` for every cut at once (two sorts and a search, not one sklearn call per cut)."""
    y_true, prob = np.asarray(y_true).ravel().astype(bool), _as_float(prob).ravel()
    cuts = np.asarray(cuts, dtype=np.float64)
    n_pos = int(y_true.sum())
    predicted = len(prob) - np.searchsorted(np.sort(prob), cuts, side="left")
    hits = n_pos - np.searchsorted(np.sort(prob[y_true]), cuts, side="left")
    denom = predicted + n_pos
    return np.where(denom > 0, 2.0 * hits / np.maximum(denom, 1), 0.0)


def best_f1_cut(y_true, prob, cuts=F1_CUTS) -> tuple[float, float]:
    """The probability cut that maximises F1 (chosen on OOF predictions), and that F1. On a plateau of equal
    F1 it takes the middle cut, the one farthest from the rows on either side."""
    scores = f1_at_cuts(y_true, prob, cuts)
    ties = np.flatnonzero(scores == scores.max())
    best = ties[len(ties) // 2]
    return float(np.asarray(cuts)[best]), float(scores[best])


def f1_best_cut(y_true, y_pred) -> float:
    """F1 at the cut :func:`best_f1_cut` picks: the score of a submission whose threshold is tuned on OOF, and so
    the objective to choose blend weights by when that is how the labels are made."""
    return best_f1_cut(y_true, y_pred)[1]


def auc(y_true, y_pred) -> float:
    y_pred = _as_float(y_pred)
    if y_pred.ndim == 2 and y_pred.shape[1] > 1:
        return float(skm.roc_auc_score(y_true, y_pred, multi_class="ovr"))
    return float(skm.roc_auc_score(np.asarray(y_true).ravel(), y_pred.ravel()))


def fbeta_multilabel(y_true, y_pred, beta: float = 2.0, threshold=0.5) -> float:
    """Mean per-sample F-beta for multi-label 0/1 targets (Planet Amazon's F2); ``threshold`` may be per class."""
    y_true = np.asarray(y_true).astype(bool)
    pred = np.asarray(y_pred) >= np.asarray(threshold)
    tp = (pred & y_true).sum(1)
    precision = tp / np.maximum(pred.sum(1), 1)
    recall = tp / np.maximum(y_true.sum(1), 1)
    b2 = beta * beta
    denom = b2 * precision + recall
    score = np.where(denom > 0, (1 + b2) * precision * recall / np.where(denom > 0, denom, 1), 0.0)
    return float(score.mean())


class Metric:
    """A named metric with its direction; calling it scores ``(y_true, y_pred)``."""

    def __init__(self, name: str, fn: Callable, greater_is_better: bool):
        self.name, self.fn, self.greater_is_better = name, fn, greater_is_better

    def __call__(self, y_true, y_pred) -> float:
        return self.fn(y_true, y_pred)

    def better(self, a: float, b: float) -> bool:
        """True when score ``a`` beats score ``b``."""
        return a > b if self.greater_is_better else a < b

    def __repr__(self) -> str:
        arrow = "higher" if self.greater_is_better else "lower"
        return f"Metric({self.name}, {arrow} is better)"


METRICS: dict[str, Metric] = {
    m.name: m
    for m in [
        Metric("rmse", rmse, False),
        Metric("rmspe", rmspe, False),
        Metric("log_loss", log_loss, False),
        Metric("accuracy", accuracy, True),
        Metric("f1", f1, True),
        Metric("f1_best_cut", f1_best_cut, True),
        Metric("auc", auc, True),
        Metric("f2_multilabel", fbeta_multilabel, True),
    ]
}


def get_metric(name_or_metric) -> Metric:
    if isinstance(name_or_metric, Metric):
        return name_or_metric
    try:
        return METRICS[name_or_metric]
    except KeyError:
        raise KeyError(f"unknown metric {name_or_metric!r}; known: {', '.join(sorted(METRICS))}") from None
