"""The LR range test's arithmetic (Leslie Smith): the smoothed loss of steps at geometrically rising LRs, recorded
until it diverges, and fastai's suggestions read off the curve (valley, steep, minimum / 10). ``Learner.lr_find``
runs the test as a fit whose callback (:class:`kitbox.training.callbacks.RangeTestRecorder`) feeds :class:`RangeTest`."""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np


@dataclass
class LRFinderResult:
    lrs: list[float]
    losses: list[float]  # smoothed (EMA, debiased)
    valley: float  # fastai's default suggestion: a point down the longest descending stretch
    steep: float  # the LR where the loss falls fastest
    minimum: float  # (LR at the minimum loss) / 10
    plot_path: Path | None = None

    def __repr__(self) -> str:
        return f"LRFinderResult(valley={self.valley:.2e}, steep={self.steep:.2e}, minimum/10={self.minimum:.2e})"


@dataclass
class RangeTest:
    """Losses of a range test smoothed by a debiased EMA (``beta``); :meth:`record` says False once the smoothed loss
    exceeds ``diverge`` times its best, and that point is not kept."""

    beta: float = 0.98
    diverge: float = 4.0
    lrs: list[float] = field(default_factory=list)
    losses: list[float] = field(default_factory=list)
    _avg: float = 0.0
    _best: float = math.inf

    def record(self, lr: float, loss: float) -> bool:
        self._avg = self.beta * self._avg + (1 - self.beta) * loss
        smooth = self._avg / (1 - self.beta ** (len(self.lrs) + 1))
        if not math.isfinite(smooth) or smooth > self.diverge * self._best:
            return False
        self._best = min(self._best, smooth)
        self.lrs.append(lr)
        self.losses.append(smooth)
        return True


def suggest_lrs(lrs: list[float], losses: list[float]) -> LRFinderResult:
    """fastai's suggestions from a range test: valley (default), steepest descent, minimum / 10."""
    if len(lrs) < 3:
        raise ValueError(f"the LR range test recorded only {len(lrs)} points before the loss diverged; give it more "
                         "batches (num_it) or a lower start_lr")
    # like fastai, ignore the first 10% (the EMA is still warming up) and the last few points (divergence),
    # when there are enough points to spare
    lo, hi = (len(lrs) // 10, len(lrs) - 5) if len(lrs) >= 20 else (0, len(lrs))
    x, y = np.asarray(lrs[lo:hi]), np.asarray(losses[lo:hi])
    grads = np.diff(y) / np.diff(np.log(x))
    steep = float(x[int(np.argmin(grads))])
    minimum = float(x[int(np.argmin(y))] / 10)
    return LRFinderResult(list(lrs), list(losses), valley=float(x[valley_index(y)]), steep=steep, minimum=minimum)


def valley_index(losses: np.ndarray) -> int:
    """fastai's valley: the longest decreasing run of losses (not necessarily adjacent points), and the point about
    half way down it (fastai's index arithmetic, kept so suggestions match fastai's)."""
    n = len(losses)
    run = [1] * n  # run[i]: the longest decreasing sequence ending at point i
    best_start, best_end = 0, 0
    for i in range(1, n):
        for j in range(i):
            if losses[i] < losses[j] and run[i] < run[j] + 1:
                run[i] = run[j] + 1
        if run[best_end] < run[i]:
            best_end, best_start = i, i - run[i]  # fastai's start is one before the run's first point
    sections = (best_end - best_start) / 3
    # clamped at 0: a run of two points would give -1, which numpy reads as the last (divergent) point
    return min(n - 1, max(0, best_start + int(sections) + int(sections / 2)))
