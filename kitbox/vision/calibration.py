"""Probabilities a fold can trust, chosen on its training rows only: how a model's prediction passes (a plain pass and
the mean of augmented TTA passes) become probabilities. TTA's plain-pass weight, a temperature, a share of the
training prior and a clip are each chosen for log loss on held-out training rows; a model that cannot show it beats
the training prior on those rows submits the prior, so a weak one scores about the constant prediction instead of
several times worse."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

BETAS = np.linspace(0.0, 1.0, 6)  # weight of the plain pass against the augmented passes' mean
TEMPERATURES = np.geomspace(0.5, 50.0, 21)  # logits are divided by it: > 1 softens an overconfident model
SHRINKS = np.array([0.0, 0.01, 0.02, 0.05, 0.1, 0.2, 0.35, 0.5, 0.75, 1.0])  # share of the prior mixed in
CLIPS = np.array([0.0, 1e-4, 1e-3, 0.0025, 0.005, 0.01, 0.02])  # probabilities kept in [clip, 1 - clip]


@dataclass(frozen=True)
class Calibration:
    """How a fold turns its prediction passes into probabilities; every value chosen on training rows only."""

    kind: str  # the task's kind
    prior: np.ndarray  # the training rows' class / label frequencies (regression: unused)
    beta: float = 1.0
    temperature: float = 1.0
    shrink: float = 0.0
    clip: float = 0.0

    def apply(self, plain: np.ndarray, augmented: np.ndarray | None = None) -> np.ndarray:
        plain = np.asarray(plain, dtype=np.float64)  # float32's 1 - 1e-12 is 1: logits and logs would be infinite
        p = plain if augmented is None else self.beta * plain + (1 - self.beta) * np.asarray(augmented, np.float64)
        if self.kind == "regression":
            return p
        p = (1 - self.shrink) * _soften(p, self.temperature, self.kind) + self.shrink * self.prior
        return np.clip(p, self.clip, 1 - self.clip) if self.clip else p

    def info(self) -> dict:
        return {"tta_beta": self.beta, "temperature": self.temperature, "prior_share": self.shrink, "clip": self.clip}

    def report(self, plain: np.ndarray, augmented: np.ndarray | None, y: np.ndarray) -> dict:
        """Its settings, and the loss on the rows it was fitted on before (plain pass) and after calibrating."""
        return {**self.info(), "calibration_rows": len(y),
                "calibration_loss_plain": calibration_loss(self.kind, y, plain),
                "calibration_loss": calibration_loss(self.kind, y, self.apply(plain, augmented))}


def _soften(p: np.ndarray, temperature: float, kind: str) -> np.ndarray:
    if temperature == 1.0:
        return p
    if kind == "multiclass":
        logits = np.log(np.clip(p, 1e-12, 1.0)) / temperature
        logits -= logits.max(1, keepdims=True)
        e = np.exp(logits)
        return e / e.sum(1, keepdims=True)
    q = np.clip(p, 1e-12, 1 - 1e-12)
    return 1.0 / (1.0 + np.exp(-np.log(q / (1 - q)) / temperature))


def _row_losses(kind: str, y: np.ndarray, p: np.ndarray) -> np.ndarray:
    """Each row's log loss (mean binary cross-entropy over labels for multi-label; squared error for regression)."""
    p = np.asarray(p, dtype=np.float64)  # in float32, 1 - 1e-15 is 1 and log(1 - q) is -inf
    if kind == "regression":
        return (np.asarray(y, dtype=np.float64) - p) ** 2
    q = np.clip(p, 1e-15, 1 - 1e-15)
    if kind == "multiclass":
        return -np.log(q[np.arange(len(y)), y])
    losses = -(y * np.log(q) + (1 - y) * np.log(1 - q))
    return losses.mean(1) if losses.ndim == 2 else losses


def calibration_loss(kind: str, y: np.ndarray, p: np.ndarray) -> float:
    return float(np.mean(_row_losses(kind, y, p)))


def _beats_the_prior(cal: "Calibration", plain, augmented, y: np.ndarray) -> bool:
    """Whether the calibrated model beats the constant prior on these rows by more than two standard errors of
    the per-row difference: a model that cannot show that (too few rows, or no signal) submits the prior."""
    p = cal.apply(plain, augmented)
    gain = _row_losses(cal.kind, y, np.broadcast_to(cal.prior, p.shape)) - _row_losses(cal.kind, y, p)
    return len(gain) > 1 and gain.mean() > 2 * gain.std(ddof=1) / np.sqrt(len(gain))


def class_prior(kind: str, y: np.ndarray, n_out: int) -> np.ndarray:
    """The rows' class frequencies (multiclass) or label / positive rates (binary, multi-label), the constant
    prediction every calibrated model must beat."""
    if kind == "multiclass":
        return np.bincount(y, minlength=n_out) / len(y)
    return np.asarray(y, dtype=np.float64).mean(0)


def _best(candidates: list[Calibration], plain, augmented, y) -> Calibration:
    """The first candidate with the lowest loss (grids run from 'change nothing' outwards)."""
    losses = [calibration_loss(c.kind, y, c.apply(plain, augmented)) for c in candidates]
    return candidates[int(np.argmin(losses))]


def fit_calibration(plain: np.ndarray, augmented: np.ndarray | None, y: np.ndarray, kind: str,
                    prior: np.ndarray) -> Calibration:
    """TTA's beta, then temperature and prior share together, then the clip, each minimising log loss on these
    (training) rows' held-out predictions; the constant prior when the model cannot show it does better."""
    cal = Calibration(kind, prior)
    if augmented is not None:
        cal = _best([Calibration(kind, prior, beta=b) for b in BETAS[::-1]], plain, augmented, y)
    if kind == "regression":
        return cal
    grid = [Calibration(kind, prior, cal.beta, t, s) for s in SHRINKS for t in _from_one(TEMPERATURES)]
    cal = _best(grid, plain, augmented, y)
    cal = _best([Calibration(kind, prior, cal.beta, cal.temperature, cal.shrink, c) for c in CLIPS],
                plain, augmented, y)
    return cal if _beats_the_prior(cal, plain, augmented, y) else Calibration(kind, prior, cal.beta, shrink=1.0)


def _from_one(values: np.ndarray) -> np.ndarray:
    """The grid ordered by distance from 1 (no change first), so ties keep the gentlest setting."""
    return values[np.argsort(np.abs(np.log(values)))]
