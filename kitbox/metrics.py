"""Competition metrics as plain numpy functions: ``metric(y_true, y_pred) -> float``.

Each is registered in ``METRICS`` as a :class:`Metric` that knows its direction (``greater_is_better``) and its
``kind``: what the competition scores ("label", "probability", "value" or "ranking"). Look one up by name with
``get_metric("rmspe")``; ``get_metric("map@12")`` builds MAP at any k.
"""
from __future__ import annotations

from typing import Callable

import numpy as np


def _as_float(y) -> np.ndarray:
    return np.asarray(y, dtype=np.float64)


# ---------------------------------------------------------------------- values (regression)
def rmse(y_true, y_pred) -> float:
    y_true, y_pred = _as_float(y_true), _as_float(y_pred)
    return float(np.sqrt(np.mean((y_true - y_pred) ** 2)))


def rmsle(y_true, y_pred) -> float:
    """RMSE of log(1 + y): errors count relatively, so it needs values >= 0."""
    y_true, y_pred = _as_float(y_true).ravel(), _as_float(y_pred).ravel()
    if (y_true < 0).any() or (y_pred < 0).any():
        raise ValueError("rmsle takes log(1 + y), defined here for values >= 0 only; clip the predictions at 0")
    return rmse(np.log1p(y_true), np.log1p(y_pred))


def mae(y_true, y_pred) -> float:
    return float(np.mean(np.abs(_as_float(y_true).ravel() - _as_float(y_pred).ravel())))


def rmspe(y_true, y_pred) -> float:
    """Root mean squared percentage error; rows whose true value is 0 are ignored (Kaggle's Rossmann rule)."""
    y_true, y_pred = _as_float(y_true).ravel(), _as_float(y_pred).ravel()
    keep = y_true != 0
    if not keep.any():
        raise ValueError("rmspe: every true value is 0, so the metric is undefined")
    pct = (y_true[keep] - y_pred[keep]) / y_true[keep]
    return float(np.sqrt(np.mean(pct**2)))


# ---------------------------------------------------------------------- probabilities
def log_loss(y_true, y_pred, eps: float = 1e-15) -> float:
    """Binary log loss for P(class 1) in ``y_pred``; multi-class when ``y_pred`` is (n, classes) and ``y_true`` holds
    class indices, each row rescaled to sum to 1 (as Kaggle scores it). Probabilities are clipped to [eps, 1 - eps]."""
    y_pred = _as_float(y_pred)
    if y_pred.ndim == 2 and y_pred.shape[1] > 1:
        p = np.clip(y_pred / y_pred.sum(1, keepdims=True), eps, 1 - eps)
        y = np.asarray(y_true).ravel().astype(np.int64)
        return float(-np.mean(np.log(p[np.arange(len(y)), y])))
    p = np.clip(y_pred.ravel(), eps, 1 - eps)
    t = _as_float(y_true).ravel()
    return float(-np.mean(t * np.log(p) + (1 - t) * np.log(1 - p)))


def _average_ranks(x: np.ndarray) -> np.ndarray:
    """1-based ranks of ``x``, ties sharing the mean of their ranks."""
    _, inverse, counts = np.unique(x, return_inverse=True, return_counts=True)
    ends = np.cumsum(counts)
    return ((ends - counts + 1 + ends) / 2)[inverse]


def _binary_auc(y_true, score) -> float:
    """ROC AUC as the Mann-Whitney statistic: the chance a positive outscores a negative (ties count half)."""
    y = np.asarray(y_true).ravel() == 1
    n_pos, n_neg = int(y.sum()), int((~y).sum())
    if n_pos == 0 or n_neg == 0:
        raise ValueError("AUC needs both classes among the true values")
    ranks = _average_ranks(_as_float(score).ravel())
    return float((ranks[y].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def auc(y_true, y_pred) -> float:
    """ROC AUC of P(class 1); for (n, classes) scores and class indices, the mean of one-vs-rest AUCs."""
    y_pred = _as_float(y_pred)
    if y_pred.ndim == 2 and y_pred.shape[1] > 1:
        y = np.asarray(y_true).ravel()
        return float(np.mean([_binary_auc(y == c, y_pred[:, c]) for c in range(y_pred.shape[1])]))
    return _binary_auc(y_true, y_pred)


def mean_columnwise_auc(y_true, y_pred) -> float:
    """Multi-label: the AUC of each label's column, averaged (Jigsaw toxic comments)."""
    y_true, y_pred = np.asarray(y_true), _as_float(y_pred)
    return float(np.mean([_binary_auc(y_true[:, j], y_pred[:, j]) for j in range(y_true.shape[1])]))


def mean_columnwise_log_loss(y_true, y_pred, eps: float = 1e-15) -> float:
    """Multi-label: the binary log loss of each label's column, averaged (Mechanisms of Action)."""
    y_true, y_pred = np.asarray(y_true), _as_float(y_pred)
    return float(np.mean([log_loss(y_true[:, j], y_pred[:, j], eps) for j in range(y_true.shape[1])]))


# ---------------------------------------------------------------------- labels
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


def _f1_per_class(y_true, y_pred) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """True positives, predicted counts and true counts per class, over the classes seen in either."""
    classes = np.union1d(y_true, y_pred)
    hits = np.array([np.sum((y_true == c) & (y_pred == c)) for c in classes])
    predicted = np.array([np.sum(y_pred == c) for c in classes])
    actual = np.array([np.sum(y_true == c) for c in classes])
    return hits, predicted, actual


def _f1(hits, predicted, actual) -> np.ndarray:
    denom = predicted + actual
    return np.where(denom > 0, 2.0 * hits / np.maximum(denom, 1), 0.0)


def f1(y_true, y_pred, threshold: float = 0.5) -> float:
    """Binary F1 of class 1; probabilities are cut at ``threshold``."""
    y_true, y_pred = np.asarray(y_true).ravel() == 1, _labels(y_pred, threshold) == 1
    return float(_f1(np.sum(y_true & y_pred), np.sum(y_pred), np.sum(y_true)))


def f1_macro(y_true, y_pred) -> float:
    """The F1 of each class, averaged; (n, classes) probabilities are taken at their argmax."""
    return float(np.mean(_f1(*_f1_per_class(np.asarray(y_true).ravel(), _labels(y_pred)))))


def f1_micro(y_true, y_pred) -> float:
    """F1 of the counts pooled over classes (equal to accuracy when each row has one label)."""
    hits, predicted, actual = _f1_per_class(np.asarray(y_true).ravel(), _labels(y_pred))
    return float(_f1(hits.sum(), predicted.sum(), actual.sum()))


F1_CUTS = np.round(np.linspace(0.05, 0.95, 91), 2)  # the probability cuts an OOF-tuned threshold is chosen from


def f1_at_cuts(y_true, prob, cuts=F1_CUTS) -> np.ndarray:
    """F1 of ``prob >= cut`` for every cut at once (two sorts and a search, not one F1 call per cut)."""
    y_true, prob = np.asarray(y_true).ravel().astype(bool), _as_float(prob).ravel()
    cuts = np.asarray(cuts, dtype=np.float64)
    n_pos = int(y_true.sum())
    predicted = len(prob) - np.searchsorted(np.sort(prob), cuts, side="left")
    hits = n_pos - np.searchsorted(np.sort(prob[y_true]), cuts, side="left")
    return _f1(hits, predicted, n_pos)


def best_f1_cut(y_true, prob, cuts=F1_CUTS, score_fn: Callable | None = None) -> tuple[float, float]:
    """The probability cut that maximises F1 (choose it on OOF predictions), and that F1. Another label metric can
    pick the cut instead: ``score_fn(y_true, labels)`` is then called once per cut. On a plateau of equal scores the
    middle cut is taken, the one farthest from the rows on either side."""
    if score_fn is None:
        scores = f1_at_cuts(y_true, prob, cuts)
    else:
        y_true, prob = np.asarray(y_true).ravel(), _as_float(prob).ravel()
        scores = np.array([score_fn(y_true, (prob >= cut).astype(np.int64)) for cut in cuts])
    ties = np.flatnonzero(scores == scores.max())
    best = ties[len(ties) // 2]
    return float(np.asarray(cuts)[best]), float(scores[best])


def f1_best_cut(y_true, y_pred) -> float:
    """F1 at the cut :func:`best_f1_cut` picks: the score of a submission whose threshold is tuned on OOF, and so
    the objective to choose blend weights by when that is how the labels are made."""
    return best_f1_cut(y_true, y_pred)[1]


def quadratic_weighted_kappa(y_true, y_pred) -> float:
    """Cohen's kappa with quadratic weights over the rating range min..max of both (Kaggle's definition). ``y_pred``:
    labels, (n, classes) probabilities (argmax) or 1-D regression outputs (rounded to the nearest rating)."""
    y_pred = np.asarray(y_pred)
    if y_pred.ndim == 1 and np.issubdtype(y_pred.dtype, np.floating):
        y_pred = np.rint(y_pred).astype(np.int64)
    a, b = np.asarray(y_true).ravel().astype(np.int64), _labels(y_pred).astype(np.int64)
    lo = min(a.min(), b.min())
    n = max(a.max(), b.max()) - lo + 1
    observed = np.bincount((a - lo) * n + (b - lo), minlength=n * n).reshape(n, n)
    expected = np.outer(np.bincount(a - lo, minlength=n), np.bincount(b - lo, minlength=n)) / len(a)
    weights = (np.arange(n)[:, None] - np.arange(n)[None, :]) ** 2
    denom = (weights * expected).sum()
    return float(1.0 - (weights * observed).sum() / denom) if denom > 0 else 1.0


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


def best_thresholds(y_true, probs, beta: float = 2.0, grid=np.linspace(0.05, 0.95, 19), rounds: int = 2) -> np.ndarray:
    """One threshold per label that maximises :func:`fbeta_multilabel` (coordinate ascent, the Planet Amazon recipe).

    Starts from the single best common threshold, then tunes one label at a time holding the others, ``rounds``
    times over. Choose thresholds on OOF/validation predictions only, never on the rows you score.
    """
    y_true, probs = np.asarray(y_true), np.asarray(probs)
    if y_true.shape != probs.shape or y_true.ndim != 2:
        raise ValueError(f"y_true {y_true.shape} and probs {probs.shape} must both be (rows, labels)")
    common = max(grid, key=lambda t: fbeta_multilabel(y_true, probs, beta, t))
    thresholds = np.full(probs.shape[1], common)
    for _ in range(rounds):
        for k in range(probs.shape[1]):
            scores = []
            for t in grid:
                trial = thresholds.copy()
                trial[k] = t
                scores.append(fbeta_multilabel(y_true, probs, beta, trial))
            thresholds[k] = grid[int(np.argmax(scores))]
    return thresholds


# ---------------------------------------------------------------------- rankings
def _relevant(row) -> set:
    if isinstance(row, (list, tuple, set, np.ndarray)):
        return set(np.asarray(list(row)).tolist())
    return {np.asarray(row).item()}


def map_at_k(y_true, y_pred, k: int = 5) -> float:
    """Mean average precision at ``k``. ``y_true``: one label per row, or a list of the relevant labels per row.
    ``y_pred``: a float numpy array (n, n_labels) is a score matrix, column j scoring label j (its top k are
    ranked); anything else (lists, integer or string arrays) is ranked labels, best first, any label type (e.g.
    whale ids). A label counts at its first rank only; each row is divided by min(relevant labels, k)."""
    y_pred_arr = np.asarray(y_pred) if not isinstance(y_pred, list) else None
    if y_pred_arr is not None and y_pred_arr.ndim == 2 and np.issubdtype(y_pred_arr.dtype, np.floating):
        ranked = np.argsort(-y_pred_arr, axis=1, kind="stable")[:, :k].tolist()
    else:
        ranked = [list(np.asarray(row).tolist())[:k] for row in y_pred]
    scores = []
    for truth, guesses in zip(y_true, ranked):
        relevant, hits, total = _relevant(truth), 0, 0.0
        for rank, label in enumerate(guesses):
            if label in relevant and label not in guesses[:rank]:
                hits += 1
                total += hits / (rank + 1)
        scores.append(total / min(len(relevant), k) if relevant else 0.0)
    return float(np.mean(scores))


# ---------------------------------------------------------------------- masks (segmentation)
def _mask_pairs(y_true, y_pred) -> tuple[np.ndarray, np.ndarray]:
    """Both as (images, pixels) booleans; probabilities are cut at 0.5. Masks of several classes, (images, classes,
    height, width), become one row per (image, class) pair: Kaggle's multi-class Dice (Severstal, Clouds) is the
    mean over those pairs."""
    t, p = np.asarray(y_true), np.asarray(y_pred)
    if t.shape != p.shape:
        raise ValueError(f"masks of shape {t.shape} scored against predictions of shape {p.shape}")
    p = p > 0.5 if np.issubdtype(p.dtype, np.floating) else p.astype(bool)
    rows = len(t) * t.shape[1] if t.ndim == 4 else len(t)
    return t.astype(bool).reshape(rows, -1), p.reshape(rows, -1)


def dice(y_true, y_pred) -> float:
    """Mean over images of 2|A and B| / (|A| + |B|); an image where both masks are empty scores 1 (Kaggle's rule:
    predicting nothing where there is nothing is right). ``y_true``, ``y_pred``: (images, height, width) masks."""
    t, p = _mask_pairs(y_true, y_pred)
    both, total = (t & p).sum(1), t.sum(1) + p.sum(1)
    return float(np.mean(np.where(total == 0, 1.0, 2 * both / np.maximum(total, 1))))


def iou(y_true, y_pred) -> float:
    """Mean over images of |A and B| / |A or B| (Jaccard); 1 where both masks are empty, as :func:`dice`."""
    t, p = _mask_pairs(y_true, y_pred)
    both, either = (t & p).sum(1), (t | p).sum(1)
    return float(np.mean(np.where(either == 0, 1.0, both / np.maximum(either, 1))))


# ---------------------------------------------------------------------- the registry
KINDS = ("label", "probability", "value", "ranking", "mask")


class Metric:
    """A named metric with its direction and ``kind`` (what it scores: "label", "probability", "value",
    "ranking" or "mask"); calling it scores ``(y_true, y_pred)``."""

    def __init__(self, name: str, fn: Callable, greater_is_better: bool, kind: str = "value"):
        if kind not in KINDS:
            raise ValueError(f"metric kind {kind!r} is not one of {KINDS}")
        self.name, self.fn, self.greater_is_better, self.kind = name, fn, greater_is_better, kind

    def __call__(self, y_true, y_pred) -> float:
        return self.fn(y_true, y_pred)

    def better(self, a: float, b: float) -> bool:
        """True when score ``a`` beats score ``b``."""
        return a > b if self.greater_is_better else a < b

    def __repr__(self) -> str:
        arrow = "higher" if self.greater_is_better else "lower"
        return f"Metric({self.name}, {arrow} is better, scores {self.kind}s)"


def _map_metric(k: int) -> Metric:
    return Metric(f"map@{k}", lambda y_true, y_pred: map_at_k(y_true, y_pred, k), True, "ranking")


METRICS: dict[str, Metric] = {
    m.name: m
    for m in [
        Metric("rmse", rmse, False, "value"),
        Metric("rmsle", rmsle, False, "value"),
        Metric("mae", mae, False, "value"),
        Metric("rmspe", rmspe, False, "value"),
        Metric("log_loss", log_loss, False, "probability"),
        Metric("auc", auc, True, "probability"),
        Metric("mean_columnwise_auc", mean_columnwise_auc, True, "probability"),
        Metric("mean_columnwise_log_loss", mean_columnwise_log_loss, False, "probability"),
        Metric("accuracy", accuracy, True, "label"),
        Metric("f1", f1, True, "label"),
        Metric("f1_macro", f1_macro, True, "label"),
        Metric("f1_micro", f1_micro, True, "label"),
        Metric("f1_best_cut", f1_best_cut, True, "label"),
        Metric("qwk", quadratic_weighted_kappa, True, "label"),
        Metric("f2_multilabel", fbeta_multilabel, True, "label"),
        _map_metric(5),
        Metric("dice", dice, True, "mask"),
        Metric("iou", iou, True, "mask"),
    ]
}


def get_metric(name_or_metric) -> Metric:
    """A registered metric by name, a Metric as it is, or ``"map@K"`` for MAP at any K."""
    if isinstance(name_or_metric, Metric):
        return name_or_metric
    if name_or_metric in METRICS:
        return METRICS[name_or_metric]
    if isinstance(name_or_metric, str) and name_or_metric.startswith("map@") and name_or_metric[4:].isdigit():
        return _map_metric(int(name_or_metric[4:]))
    raise KeyError(f"unknown metric {name_or_metric!r}; known: {', '.join(sorted(METRICS))}, map@K")


def named_metric(metric) -> tuple[str, Callable]:
    """(name, callable) for a metric given by name, as a Metric, or as any function (named after it)."""
    if isinstance(metric, str):
        m = get_metric(metric)
        return m.name, m
    return getattr(metric, "name", getattr(metric, "__name__", "metric")), metric
