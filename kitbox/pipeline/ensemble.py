"""Averaging and blending predictions: fold mean, rank mean, SGDR snapshot mean, and weights found on
out-of-fold predictions by Caruana's greedy selection with replacement (a hill climb over model counts).
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from kitbox.metrics import Metric, get_metric

RANK_METRICS = {"auc"}  # metrics that only see the order of predictions: average ranks, not values


def to_ranks(pred: np.ndarray) -> np.ndarray:
    """Each column's ranks scaled to (0, 1]; ties share their mean rank."""
    from scipy.stats import rankdata

    pred = np.asarray(pred, dtype=np.float64)
    return rankdata(pred, axis=0) / len(pred)


def fold_mean(preds, rank: bool = False) -> np.ndarray:
    """Average a list of same-shaped predictions (folds, snapshots or TTA passes); ranks when ``rank``."""
    preds = [np.asarray(p, dtype=np.float64) for p in preds]
    if not preds:
        raise ValueError("nothing to average: the list of predictions is empty")
    shapes = {p.shape for p in preds}
    if len(shapes) > 1:
        raise ValueError(f"cannot average predictions of different shapes: {sorted(shapes)}")
    return np.mean([to_ranks(p) if rank else p for p in preds], axis=0)


def rank_mean(preds) -> np.ndarray:
    return fold_mean(preds, rank=True)


def snapshot_mean(test: np.ndarray, snapshots_test=()) -> np.ndarray:
    """A fold's test prediction: the mean of its SGDR snapshots when it kept any, else its final model's."""
    return fold_mean(snapshots_test) if len(snapshots_test) else np.asarray(test, dtype=np.float64)


def blend(preds: dict[str, np.ndarray], weights: dict[str, float], rank: bool = False) -> np.ndarray:
    """Weighted average of named predictions; names with weight 0 may be missing from ``preds``."""
    used = {name: w for name, w in weights.items() if w > 0}
    total = sum(used.values())
    if not used or total <= 0:
        raise ValueError(f"blend weights must have a positive entry, got {weights}")
    out = None
    for name, w in used.items():
        p = np.asarray(preds[name], dtype=np.float64)
        p = to_ranks(p) if rank else p
        out = p * (w / total) if out is None else out + p * (w / total)
    return out


@dataclass
class Blend:
    weights: dict[str, float]  # recipe -> weight, summing to 1
    score: float  # the blend's OOF score
    single_scores: dict[str, float]  # each recipe's OOF score on the same rows
    best_single: str


def caruana(oofs: dict[str, np.ndarray], y_true, metric, max_iter: int = 50, patience: int = 10,
            rank: bool = False) -> Blend:
    """Caruana et al. (2004) ensemble selection: start from the best model, then repeatedly add (with
    replacement) the model whose addition scores best on OOF; keep the best blend seen.

    Starting from the best single model and keeping only improvements means the blend never scores
    worse on OOF than the best single model.
    """
    metric: Metric = get_metric(metric)
    if not oofs:
        raise ValueError("caruana: no OOF predictions to blend")
    preds = {n: to_ranks(p) if rank else np.asarray(p, dtype=np.float64) for n, p in oofs.items()}
    single = {n: float(metric(y_true, p)) for n, p in preds.items()}
    best_single = next(iter(single))
    for name, s in single.items():
        if metric.better(s, single[best_single]):
            best_single = name
    counts = dict.fromkeys(preds, 0)
    counts[best_single] = 1
    running_sum, n_models = preds[best_single].copy(), 1
    best_score, best_counts, stale = single[best_single], dict(counts), 0
    for _ in range(max_iter if len(preds) > 1 else 0):
        trial = {n: float(metric(y_true, (running_sum + p) / (n_models + 1))) for n, p in preds.items()}
        pick = next(iter(trial))
        for name, s in trial.items():
            if metric.better(s, trial[pick]):
                pick = name
        counts[pick] += 1
        running_sum += preds[pick]
        n_models += 1
        if metric.better(trial[pick], best_score):
            best_score, best_counts, stale = trial[pick], dict(counts), 0
        else:
            stale += 1  # a plateau may still lead somewhere better, so climb on for a while
            if stale >= patience:
                break
    total = sum(best_counts.values())
    weights = {n: c / total for n, c in best_counts.items()}
    score = float(metric(y_true, blend(preds, weights)))
    if metric.better(single[best_single], score):  # float round-off between sums and weights: never lose to a single model
        weights, score = {n: float(n == best_single) for n in preds}, single[best_single]
    return Blend(weights=weights, score=score, single_scores=single, best_single=best_single)


# ---------------------------------------------------------------------------------------------- the run's blend


@dataclass
class FittedBlend:
    """How a run combines its recipes: Caruana weights (a weighted mean, of ranks for rank metrics), or a stacker
    (a level-2 linear model on the recipes' OOF predictions) when that scored better on held-out rows."""

    method: str  # "caruana" or "stack"
    weights: dict[str, float]  # Caruana's weights; for the stacker, each recipe's share of its coefficients
    rank: bool = False
    stacker: object = None
    task: str | None = None
    held_out: dict = field(default_factory=dict)  # each method's score on rows it was not fitted on


STACKABLE = ("regression", "binary", "multiclass", "multilabel")  # a stacker learns one row's columns: not masks


def _stack_features(preds: dict[str, np.ndarray], task: str | None) -> np.ndarray:
    """Level-2 inputs: logits of probabilities for classification, the values themselves for regression."""
    cols = []
    for p in preds.values():
        p = np.asarray(p, dtype=np.float64)
        p = p.reshape(len(p), -1)
        if task in ("binary", "multiclass", "multilabel"):
            p = np.clip(p, 1e-6, 1 - 1e-6)
            p = np.log(p / (1 - p))
        cols.append(p)
    return np.concatenate(cols, axis=1)


def _fit_stacker(preds: dict[str, np.ndarray], y, task: str | None):
    from sklearn.linear_model import LinearRegression, LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    x = _stack_features(preds, task)
    def logistic():  # standardised logits: one C suits every scale of inputs
        return make_pipeline(StandardScaler(), LogisticRegression(C=1.0, max_iter=1000))

    if task in ("binary", "multiclass"):
        return logistic().fit(x, np.asarray(y))
    if task == "multilabel":
        return [logistic().fit(x, np.asarray(y)[:, j]) for j in range(np.shape(y)[1])]
    return LinearRegression(positive=True).fit(x, np.asarray(y, dtype=np.float64))


def _stack_predict(stacker, preds: dict[str, np.ndarray], task: str | None) -> np.ndarray:
    x = _stack_features(preds, task)
    if task == "binary":
        return stacker.predict_proba(x)[:, 1]
    if task == "multiclass":
        return stacker.predict_proba(x)
    if task == "multilabel":
        return np.stack([m.predict_proba(x)[:, 1] for m in stacker], axis=1)
    return stacker.predict(x)


def stack_shares(stacker, preds: dict[str, np.ndarray]) -> dict[str, float]:
    """Each recipe's share of the stacker's absolute coefficients (on standardised logits for classification, so
    comparable): what the summary shows as its weight; 0 for a recipe the stacker ignores."""
    models = stacker if isinstance(stacker, list) else [stacker]  # multi-label: one logistic per label
    linear = [m[-1] if hasattr(m, "steps") else m for m in models]  # the model after the scaler of a pipeline
    coef = sum(np.abs(np.atleast_2d(m.coef_)).sum(0) for m in linear)
    widths = [int(np.prod(np.shape(p)[1:], dtype=np.int64)) for p in preds.values()]
    per = np.add.reduceat(coef, np.cumsum([0] + widths[:-1]))
    total = per.sum()
    return {n: float(v / total) if total > 0 else 1.0 / len(preds) for n, v in zip(preds, per)}


def _fit_one(method: str, oofs, y_true, metric, rank: bool, task) -> FittedBlend:
    if method == "stack":
        stacker = _fit_stacker(oofs, y_true, task)
        return FittedBlend("stack", stack_shares(stacker, oofs), rank, stacker, task)
    return FittedBlend("caruana", caruana(oofs, y_true, metric, rank=rank).weights, rank, task=task)


def fit_blend(oofs: dict[str, np.ndarray], y_true, metric, rank: bool = False, task: str | None = None,
              groups: np.ndarray | None = None, methods=("caruana", "stack")) -> FittedBlend:
    """Blend weights chosen on OOF predictions: Caruana's selection, or a stacker kept only when it beats Caruana
    on rows it was not fitted on (``groups``: the folds; without them, or with one recipe, Caruana)."""
    metric = get_metric(metric)
    y_true = np.asarray(y_true)
    if (len(oofs) < 2 or groups is None or len(np.unique(groups)) < 2 or "stack" not in methods
            or task not in STACKABLE):
        return _fit_one("caruana", oofs, y_true, metric, rank, task)
    held_out = {}
    for method in methods:
        pred = None
        for g in np.unique(groups):
            fit, held = groups != g, groups == g
            fitted = _fit_one(method, {n: p[fit] for n, p in oofs.items()}, y_true[fit], metric, rank, task)
            part = apply_blend(fitted, {n: p[held] for n, p in oofs.items()})
            pred = np.zeros((len(y_true),) + part.shape[1:]) if pred is None else pred
            pred[held] = part
        held_out[method] = float(metric(y_true, pred))
    best = "stack" if metric.better(held_out.get("stack", np.nan), held_out["caruana"]) else "caruana"
    chosen = _fit_one(best, oofs, y_true, metric, rank, task)
    chosen.held_out = held_out
    return chosen


def apply_blend(fitted: FittedBlend, preds: dict[str, np.ndarray]) -> np.ndarray:
    if fitted.method == "stack":
        return _stack_predict(fitted.stacker, {n: preds[n] for n in fitted.weights}, fitted.task)
    return blend(preds, fitted.weights, rank=fitted.rank)


def holdout_groups(folds_of_rows: np.ndarray, seed: int = 0) -> np.ndarray:
    """Groups for scoring a blend on rows it was not fitted on: the CV folds, or, with a single (holdout) fold,
    its rows split at random into two halves."""
    folds_of_rows = np.asarray(folds_of_rows)
    if len(np.unique(folds_of_rows)) > 1:
        return folds_of_rows
    halves = np.random.default_rng(seed).permutation(len(folds_of_rows)) % 2
    return halves.astype(np.int64)


def nested_predictions(oofs: dict[str, np.ndarray], y_true, groups: np.ndarray, metric, decide, apply,
                       rank: bool = False, task: str | None = None) -> np.ndarray:
    """Each group's rows predicted by the whole procedure (blend weights, then ``decide``) fitted on the other
    groups only, then ``apply``-ed: scoring these is the honest OOF score of choosing weights and cuts on OOF."""
    y_true = np.asarray(y_true)
    out = None
    for g in np.unique(groups):
        held, fit = groups == g, groups != g
        fitted = fit_blend({n: p[fit] for n, p in oofs.items()}, y_true[fit], metric, rank=rank, task=task,
                           groups=holdout_groups(groups[fit]) if len(np.unique(groups)) > 2 else None)
        decided = decide(apply_blend(fitted, {n: p[fit] for n, p in oofs.items()}), y_true[fit])
        pred = np.asarray(apply(apply_blend(fitted, {n: p[held] for n, p in oofs.items()}), decided))
        if out is None:
            out = np.zeros((len(y_true),) + pred.shape[1:], dtype=pred.dtype)
        out[held] = pred
    return out
