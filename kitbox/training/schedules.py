"""Learning-rate and momentum schedules as pure functions of training progress.

Every function here maps a position in training to a value, with no state and no torch: the
Learner asks for the value at each batch, and the tests check the formulas directly. Each LR
schedule is linear in its maximum LR, so one shape serves every layer group: the Learner
multiplies a group's LR by ``shape(t) / shape-at-lr_max=1``.
"""
from __future__ import annotations

import math


def cosine_between(start: float, end: float, pct: float) -> float:
    """Cosine interpolation from ``start`` (pct=0) to ``end`` (pct=1)."""
    return end + (start - end) / 2 * (1 + math.cos(math.pi * pct))


def cosine_lr(pct: float, lr_max: float, lr_min: float = 0.0) -> float:
    """Plain cosine annealing over the whole fit (Loshchilov & Hutter without restarts)."""
    return cosine_between(lr_max, lr_min, pct)


def one_cycle_lr(pct: float, lr_max: float, pct_start: float = 0.25, div: float = 25.0, div_final: float = 1e5) -> float:
    """fastai's one-cycle: cosine warm-up from lr_max/div to lr_max over ``pct_start``, then cosine down to lr_max/div_final."""
    if pct < pct_start:
        return cosine_between(lr_max / div, lr_max, pct / pct_start)
    return cosine_between(lr_max, lr_max / div_final, (pct - pct_start) / (1 - pct_start))


def one_cycle_momentum(pct: float, moms: tuple[float, float, float] = (0.95, 0.85, 0.95), pct_start: float = 0.25) -> float:
    """Momentum mirrors the LR: high while the LR is low, lowest at the LR peak."""
    if pct < pct_start:
        return cosine_between(moms[0], moms[1], pct / pct_start)
    return cosine_between(moms[1], moms[2], (pct - pct_start) / (1 - pct_start))


def sgdr_cycle_lengths(n_cycles: int, cycle_len: float, cycle_mult: float = 1) -> list[float]:
    """Epochs of each SGDR cycle: cycle_len, cycle_len*m, cycle_len*m^2, ..."""
    if n_cycles < 1 or cycle_len <= 0 or cycle_mult < 1:
        raise ValueError(f"SGDR needs n_cycles >= 1, cycle_len > 0, cycle_mult >= 1; got {n_cycles}, {cycle_len}, {cycle_mult}")
    return [cycle_len * cycle_mult**c for c in range(n_cycles)]


def sgdr_total_epochs(n_cycles: int, cycle_len: float, cycle_mult: float = 1) -> float:
    return sum(sgdr_cycle_lengths(n_cycles, cycle_len, cycle_mult))


def sgdr_lr(epoch: float, lr_max: float, n_cycles: int, cycle_len: float, cycle_mult: float = 1, lr_min: float = 0.0) -> float:
    """SGDR (Loshchilov & Hutter 2017): the LR restarts at lr_max at each cycle start and cosine-anneals to lr_min.

    ``epoch`` is fractional (batch-level). Works for ``cycle_mult=1`` (equal cycles) as well as > 1.
    """
    start = 0.0
    for length in sgdr_cycle_lengths(n_cycles, cycle_len, cycle_mult):
        if epoch < start + length:
            return cosine_between(lr_max, lr_min, (epoch - start) / length)
        start += length
    return lr_min  # at or past the end of the last cycle


def exponential_lr(step: int, n_steps: int, start_lr: float, end_lr: float) -> float:
    """The LR range test's schedule: rises geometrically from start_lr (step 0) to end_lr (step n_steps - 1)."""
    return start_lr * (end_lr / start_lr) ** (step / max(n_steps - 1, 1))
