"""The schedules pinned to PyTorch's own schedulers, stepped once per batch, and to the points a user reads off a plot."""
import math
import warnings

import numpy as np
import pytest

from helpers.schedules import torch_one_cycle, torch_sgdr
from kitbox.training import schedules
from kitbox.training.groups import spread_lr


@pytest.mark.parametrize("n_steps", [7, 40, 333])
@pytest.mark.parametrize("pct_start,div,div_final,moms", [
    (0.25, 25.0, 1e5, (0.95, 0.85, 0.95)),  # kitbox's defaults (fastai's)
    (0.3, 10.0, 1e4, (0.9, 0.8, 0.9)),
    (0.1, 100.0, 1e3, (0.98, 0.9, 0.98)),
])
def test_one_cycle_lr_and_momentum_equal_torch_one_cycle_lr(n_steps, pct_start, div, div_final, moms):
    lr = 3e-3
    ours = np.array([(schedules.one_cycle_lr(i / n_steps, lr, pct_start, div, div_final),
                      schedules.one_cycle_momentum(i / n_steps, moms, pct_start)) for i in range(n_steps)])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch's notes about scheduler/optimizer call order
        reference = torch_one_cycle(n_steps, lr, pct_start, div, div_final, moms)
    np.testing.assert_allclose(ours, reference, rtol=1e-12, atol=0)


@pytest.mark.parametrize("n_batches,cycle_len,cycle_mult,n_cycles,lr_min", [
    (10, 1, 1, 3, 0.0),
    (8, 2, 1, 3, 1e-4),
    (10, 1, 2, 3, 0.0),
    (6, 2, 2, 3, 1e-5),
    (3, 1, 3, 3, 0.0),
])
def test_sgdr_equals_torch_cosine_annealing_warm_restarts(n_batches, cycle_len, cycle_mult, n_cycles, lr_min):
    lr = 0.1
    n_steps = int(schedules.sgdr_total_epochs(n_cycles, cycle_len, cycle_mult)) * n_batches
    ours = [schedules.sgdr_lr(i / n_batches, lr, n_cycles, cycle_len, cycle_mult, lr_min) for i in range(n_steps)]
    np.testing.assert_allclose(ours, torch_sgdr(n_batches, cycle_len, cycle_mult, lr, lr_min, n_steps),
                               rtol=1e-12, atol=1e-15)


@pytest.mark.parametrize("n_cycles,cycle_len,cycle_mult,expected", [
    (3, 1, 1, [1, 1, 1]),
    (3, 1, 2, [1, 2, 4]),
    (2, 3, 2, [3, 6]),
    (4, 2, 1, [2, 2, 2, 2]),
])
def test_sgdr_cycle_lengths_and_the_lr_after_the_last_cycle(n_cycles, cycle_len, cycle_mult, expected):
    assert schedules.sgdr_cycle_lengths(n_cycles, cycle_len, cycle_mult) == expected
    assert schedules.sgdr_total_epochs(n_cycles, cycle_len, cycle_mult) == sum(expected)
    assert schedules.sgdr_lr(sum(expected), 1.0, n_cycles, cycle_len, cycle_mult, lr_min=0.01) == 0.01


@pytest.mark.parametrize("bad", [dict(n_cycles=0, cycle_len=1), dict(n_cycles=2, cycle_len=0),
                                 dict(n_cycles=2, cycle_len=1, cycle_mult=0.5)])
def test_sgdr_rejects_meaningless_cycles(bad):
    with pytest.raises(ValueError):
        schedules.sgdr_cycle_lengths(**bad)


@pytest.mark.parametrize("pct,lr_min,expected", [(0.0, 0.0, 1.0), (0.5, 0.0, 0.5), (1.0, 0.0, 0.0),
                                                 (0.5, 0.2, 0.6), (0.25, 0.0, (1 + math.sqrt(0.5)) / 2)])
def test_cosine_lr_at_known_points(pct, lr_min, expected):
    assert schedules.cosine_lr(pct, 1.0, lr_min) == pytest.approx(expected, abs=1e-15)


@pytest.mark.parametrize("start_lr,end_lr,n_steps", [(1e-7, 10.0, 100), (1e-5, 1.0, 30), (1e-3, 1e-1, 2)])
def test_exponential_lr_is_geometric_from_start_to_end(start_lr, end_lr, n_steps):
    values = np.array([schedules.exponential_lr(i, n_steps, start_lr, end_lr) for i in range(n_steps)])
    assert values[0] == pytest.approx(start_lr) and values[-1] == pytest.approx(end_lr)
    ratios = values[1:] / values[:-1]  # one constant ratio: equal steps on a log axis
    np.testing.assert_allclose(ratios, (end_lr / start_lr) ** (1 / (n_steps - 1)), rtol=1e-9)


def test_spread_lr_follows_fastai_conventions():
    assert spread_lr(slice(1e-4, 1e-2), 3) == pytest.approx([1e-4, 1e-3, 1e-2])
    assert spread_lr(slice(1e-2), 3) == pytest.approx([1e-3, 1e-3, 1e-2])
    assert spread_lr(3e-3, 4) == [3e-3] * 4
    assert spread_lr([1, 2], 2) == [1.0, 2.0]
    with pytest.raises(ValueError, match="one per group"):
        spread_lr([1e-3, 1e-2], 3)
