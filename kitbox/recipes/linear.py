"""One linear head for every modality: logistic regression (one per label for multi-label) or ridge for regression,
its C chosen by inner CV on the rows it is fitted on. The text recipes fit it on TF-IDF matrices or sentence
vectors; the image linear probe on standardised backbone features."""
from __future__ import annotations

from typing import Sequence

import numpy as np
from scipy import sparse
from sklearn.linear_model import LogisticRegression, Ridge, RidgeCV
from sklearn.metrics import log_loss
from sklearn.model_selection import StratifiedKFold

LINEAR_CS = (0.1, 0.3, 1.0, 3.0, 10.0, 30.0)  # the inverse regularisations inner CV chooses from by default


def logistic_regression(C: float, x, y: np.ndarray) -> LogisticRegression:
    """An unfitted logistic regression suited to ``x``: liblinear's dual solver for two classes on sparse features
    with more columns than rows (TF-IDF: twice as fast as lbfgs), lbfgs otherwise (softmax for several classes)."""
    if sparse.issparse(x) and x.shape[1] > x.shape[0] and len(np.unique(y)) == 2:
        return LogisticRegression(C=C, solver="liblinear", dual=True, max_iter=2000)
    return LogisticRegression(C=C, max_iter=2000)


def choose_C(x, y: np.ndarray, cs: Sequence[float], seed: int, folds: int = 3, warm_start: bool = False) -> float:
    """The C of ``cs`` whose logistic regression has the lowest log loss over stratified inner folds of these rows
    (as many as the rarest class allows, at least 2; with a class of one row, sklearn's default C = 1). With
    ``warm_start`` each inner model starts from the previous, smaller C's solution, so the grid costs little more
    than one fit per inner fold (lbfgs; liblinear always starts from zero)."""
    counts = np.unique(y, return_counts=True)[1]
    if counts.min() < 2:
        return 1.0
    n_splits = max(2, min(folds, int(counts.min())))
    order = np.argsort(cs) if warm_start else range(len(cs))
    losses = np.zeros(len(cs))
    for fit_rows, held in StratifiedKFold(n_splits, shuffle=True, random_state=seed).split(np.zeros(len(y)), y):
        model = logistic_regression(1.0, x, y).set_params(warm_start=warm_start)
        for i in order:
            if not warm_start:
                model = logistic_regression(cs[i], x, y)
            model.set_params(C=cs[i]).fit(x[fit_rows], y[fit_rows])
            losses[i] += log_loss(y[held], model.predict_proba(x[held]), labels=model.classes_)
    return float(cs[int(np.argmin(losses))])


class LinearHead:
    """Logistic regression (one per label for multi-label) or ridge (regression). ``C`` None: chosen from ``cs`` by
    inner CV on the rows it is fitted on (ridge: alpha = 1 / C by efficient leave-one-out). A label with one class
    in these rows predicts its smoothed frequency. ``predict`` gives the task's decoded predictions; ``chosen`` the
    C of each model that chose one."""

    def __init__(self, kind: str, n_out: int, C: float | None = None, seed: int = 0, inner_folds: int = 3,
                 cs: Sequence[float] = LINEAR_CS, warm_start: bool = False):
        self.kind, self.n_out, self.C, self.seed, self.inner_folds = kind, n_out, C, seed, inner_folds
        self.cs, self.warm_start = tuple(cs), warm_start
        self.models: list = []
        self.chosen: list[float] = []

    @property
    def chosen_C(self) -> float | list[float] | None:
        """The chosen C for a report: one value, one per label, or None when ``C`` was given."""
        return self.chosen[0] if len(self.chosen) == 1 else (self.chosen or None)

    def fit(self, x, y: np.ndarray) -> "LinearHead":
        self.chosen = []
        if self.kind == "regression":
            self.models = [self._ridge(x, y)]
        elif self.kind == "multilabel":
            self.models = [self._logistic(x, y[:, j].astype(np.int64)) for j in range(y.shape[1])]
        else:
            self.models = [self._logistic(x, y.astype(np.int64))]
        return self

    def _ridge(self, x, y):
        if self.C is not None:
            return Ridge(alpha=1.0 / self.C).fit(x, y)
        model = RidgeCV(alphas=[1.0 / c for c in self.cs]).fit(x, y)
        self.chosen.append(float(1.0 / model.alpha_))
        return model

    def _width(self) -> int:
        return 2 if self.kind in ("binary", "multilabel") else self.n_out

    def _logistic(self, x, y):
        classes = np.unique(y)
        if len(classes) == 1:  # a label that never (or always) occurs in these rows: its smoothed frequency
            p = np.full(self._width(), 0.5 / (len(y) + 1))
            p[classes[0]] = 1 - p[classes[0]] * (self._width() - 1)
            return p
        C = self.C
        if C is None:
            C = float(self.cs[0]) if len(self.cs) == 1 else choose_C(x, y, self.cs, self.seed, self.inner_folds,
                                                                     self.warm_start)
            self.chosen.append(C)
        return logistic_regression(C, x, y).fit(x, y)

    def predict(self, x) -> np.ndarray:
        n = x.shape[0]
        if self.kind == "regression":
            return self.models[0].predict(x)
        if self.kind == "multilabel":
            return np.stack([self._proba(m, x, n)[:, 1] for m in self.models], 1)
        proba = self._proba(self.models[0], x, n)
        # float32 features give float32 probabilities: renormalised in float64 so rows sum to 1 for log loss
        return proba[:, 1] if self.kind == "binary" else proba / proba.sum(1, keepdims=True)

    def _proba(self, model, x, n: int) -> np.ndarray:
        """(n, classes) probabilities; a class missing from the fitted rows gets 0."""
        if isinstance(model, np.ndarray):
            return np.tile(model, (n, 1))
        out = np.zeros((n, self._width()))
        out[:, model.classes_.astype(np.int64)] = model.predict_proba(x)
        return out
