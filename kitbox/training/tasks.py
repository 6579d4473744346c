"""The target decides the head: its activation, its loss, and how raw outputs decode to predictions.

- regression: identity, or a scaled sigmoid when ``y_range=(lo, hi)`` is given; MSE on the scaled output.
- binary: one logit; BCE-with-logits; decodes to P(class 1).
- multiclass: softmax over ``n_out`` logits; cross-entropy (optional label smoothing). Softmax picks ONE class.
- multilabel: a sigmoid per label; BCE; decodes to per-label probabilities, thresholded on validation.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F

KINDS = ("regression", "binary", "multiclass", "multilabel")


@dataclass
class Task:
    kind: str
    n_out: int | None = None
    y_range: tuple[float, float] | None = None
    label_smoothing: float = 0.0
    pos_weight: float | None = None  # binary/multilabel: weight of the positive class in BCE

    def __post_init__(self):
        if self.kind not in KINDS:
            raise ValueError(f"task kind {self.kind!r} is not one of {KINDS}")
        if self.kind in ("regression", "binary"):
            self.n_out = self.n_out or 1
        elif not self.n_out or self.n_out < 2:
            raise ValueError(f"a {self.kind} task needs n_out >= 2 (the number of classes/labels), got {self.n_out}")
        if self.y_range is not None and self.kind != "regression":
            raise ValueError("y_range scales a regression output; it has no meaning for a classification task")

    @property
    def target_dtype(self) -> torch.dtype:
        """The dtype the loss takes targets in: class indices (int64) for softmax, floats for every other head."""
        return torch.int64 if self.kind == "multiclass" else torch.float32

    def targets(self, y) -> np.ndarray:
        """``y`` as a numpy array in :attr:`target_dtype`, for loaders that hold numpy targets."""
        return np.asarray(y).astype(str(self.target_dtype).removeprefix("torch."))

    def scale_output(self, out: torch.Tensor) -> torch.Tensor:
        """Regression: the output squeezed to (n,) and, with ``y_range``, squashed into it by a scaled sigmoid; this
        is what the loss sees and what predictions are. Classification outputs (logits) pass through as they are."""
        if self.kind == "regression":
            out = out.float()
            if self.y_range is not None:
                lo, hi = self.y_range
                out = torch.sigmoid(out) * (hi - lo) + lo
            return out.squeeze(-1) if out.ndim == 2 and out.shape[-1] == 1 else out
        return out

    def loss(self, out: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        out = out.float()
        if self.kind == "regression":
            pred = self.scale_output(out)
            return F.mse_loss(pred, target.float().reshape(pred.shape))
        if self.kind == "binary":
            logit = out.reshape(-1)
            pw = None if self.pos_weight is None else torch.tensor(self.pos_weight, device=out.device)
            return F.binary_cross_entropy_with_logits(logit, target.float().reshape(-1), pos_weight=pw)
        if self.kind == "multiclass":
            if target.ndim > 1 and target.shape[-1] > 1:
                raise ValueError(
                    "a softmax (multiclass) head was given multi-label targets: softmax picks exactly one class per "
                    "row. "
                    "Use Task('multilabel', ...) for rows that can carry several labels."
                )
            return F.cross_entropy(out, target.long().reshape(-1), label_smoothing=self.label_smoothing)
        pw = None if self.pos_weight is None else torch.full((out.shape[-1],), self.pos_weight, device=out.device)
        return F.binary_cross_entropy_with_logits(out, target.float(), pos_weight=pw)

    def decode(self, out: torch.Tensor) -> torch.Tensor:
        """Predictions a user wants: values, P(class 1), class probabilities or label probabilities."""
        out = out.float()
        if self.kind == "regression":
            return self.scale_output(out)
        if self.kind == "binary":
            return torch.sigmoid(out.reshape(-1))
        if self.kind == "multiclass":
            return torch.softmax(out, dim=-1)
        return torch.sigmoid(out)


MAX_CLASSES = 20  # whole numbers with more distinct values are a quantity, not classes (fastai's cont_cat_split rule)


def _is_tags(y: pd.Series, sep: str) -> bool:
    """Lists, or text in which more than 5% of the values hold several ``sep``-separated tags."""
    first = y.dropna().iloc[0] if y.notna().any() else None
    if isinstance(first, (list, tuple, set, np.ndarray)):
        return True
    text = y.dropna().astype(str)
    if not len(text) or pd.api.types.is_numeric_dtype(y):
        return False
    return text.str.contains(sep, regex=False).mean() > 0.05


def infer_kind(y, metric_kind: str | None = None, label_sep: str = " ") -> tuple[str, list]:
    """(kind, classes) from target values: a Series (one target), a DataFrame or 2-D array (several), and, where
    known, the kind of value the metric scores (:func:`kitbox.io.submission.metric_kind`: "value", "label",
    "probability", "ranking").

    Several 0/1 columns -> multilabel (their names, or positions, are the classes), other columns -> regression;
    lists or ``label_sep``-separated tags -> multilabel (the sorted tags); a metric of values, or non-integer floats
    -> regression; without a metric, whole numbers with more than MAX_CLASSES distinct values -> regression;
    otherwise binary or multiclass, the sorted distinct values as classes."""
    if isinstance(y, np.ndarray) and y.ndim == 2:
        y = pd.DataFrame(y)
    if isinstance(y, pd.DataFrame):
        binary = y.isin([0, 1, 0.0, 1.0, True, False]).all().all()
        return ("multilabel" if binary and metric_kind != "value" else "regression"), list(y.columns)
    y = y if isinstance(y, pd.Series) else pd.Series(np.asarray(y))
    if _is_tags(y, label_sep):
        listed = (list, tuple, set, np.ndarray)
        tags = y.dropna().map(lambda v: list(v) if isinstance(v, listed) else str(v).split(label_sep))
        return "multilabel", sorted({t for row in tags for t in row if t != ""})
    if metric_kind == "value" or (pd.api.types.is_float_dtype(y) and not np.all(np.mod(y.dropna(), 1) == 0)):
        return "regression", []
    if metric_kind is None and pd.api.types.is_numeric_dtype(y) and y.nunique() > MAX_CLASSES:
        return "regression", []
    classes = sorted(y.dropna().unique().tolist(), key=lambda v: (str(type(v)), v))
    if len(classes) < 2:
        where = f"target column {y.name!r}" if y.name is not None else "the targets"
        raise ValueError(f"{where} has {len(classes)} distinct value(s) {classes}: nothing to learn")
    return ("binary" if len(classes) == 2 else "multiclass"), classes


def infer_task(y, kind: str | None = None, metric_kind: str | None = None, label_sep: str = " ",
               **task_kwargs) -> Task:
    """The :class:`Task` the targets call for (see :func:`infer_kind`), or a forced ``kind`` checked against them."""
    inferred, classes = infer_kind(y, metric_kind, label_sep)
    if kind is None:
        kind = inferred
    elif kind == "multiclass" and inferred == "multilabel":
        raise ValueError(
            "these targets carry several labels per row, but a multiclass (softmax) task was asked for: softmax "
            "makes the classes compete and predicts one. Use kind='multilabel' (a sigmoid per label)."
        )
    elif kind in ("binary", "multiclass") and inferred == "regression":
        raise ValueError("these targets are non-integer floats (a regression target); a classification task "
                         "cannot fit them")
    n_out = task_kwargs.pop("n_out", len(classes))
    return Task(kind, n_out=None if kind in ("regression", "binary") else n_out, **task_kwargs)
