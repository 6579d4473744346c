"""The schedules' values at known points: what a user reads off a fastai/SGDR plot must hold here."""
import math

import pytest

from kitbox import schedules
from kitbox.groups import spread_lr


def test_one_cycle_starts_low_peaks_at_25_percent_and_ends_near_zero():
    lr = 1e-2
    assert schedules.one_cycle_lr(0.0, lr) == pytest.approx(lr / 25)
    assert schedules.one_cycle_lr(0.25, lr) == pytest.approx(lr)
    assert schedules.one_cycle_lr(1.0, lr) == pytest.approx(lr / 1e5)
    values = [schedules.one_cycle_lr(i / 1000, lr) for i in range(1001)]
    assert max(values) == pytest.approx(lr)
    assert values.index(max(values)) == 250


def test_one_cycle_momentum_mirrors_the_lr():
    assert schedules.one_cycle_momentum(0.0) == pytest.approx(0.95)
    assert schedules.one_cycle_momentum(0.25) == pytest.approx(0.85)
    assert schedules.one_cycle_momentum(1.0) == pytest.approx(0.95)


def test_sgdr_restarts_at_epochs_1_and_3_with_cycle_mult_2():
    lr = 0.1
    kwargs = dict(lr_max=lr, n_cycles=3, cycle_len=1, cycle_mult=2)
    assert schedules.sgdr_total_epochs(3, 1, 2) == 7
    for restart in (0, 1, 3):
        assert schedules.sgdr_lr(restart, **kwargs) == pytest.approx(lr)
        if restart:
            assert schedules.sgdr_lr(restart - 1e-6, **kwargs) < 1e-6 * lr * 10
    # the middle of the second cycle (epochs 1..3) is half way down
    assert schedules.sgdr_lr(2.0, **kwargs) == pytest.approx(lr / 2)
    assert schedules.sgdr_lr(7.0, **kwargs) == 0.0


def test_sgdr_with_cycle_mult_1_gives_equal_cycles():
    values = [schedules.sgdr_lr(e / 4, 1.0, n_cycles=3, cycle_len=2, cycle_mult=1) for e in range(24)]
    assert values[0:8] == values[8:16] == values[16:24]
    assert schedules.sgdr_total_epochs(3, 2, 1) == 6


@pytest.mark.parametrize("bad", [dict(n_cycles=0, cycle_len=1), dict(n_cycles=2, cycle_len=0), dict(n_cycles=2, cycle_len=1, cycle_mult=0.5)])
def test_sgdr_rejects_meaningless_cycles(bad):
    with pytest.raises(ValueError):
        schedules.sgdr_cycle_lengths(**bad)


def test_cosine_and_exponential():
    assert schedules.cosine_lr(0.0, 1.0) == 1.0
    assert schedules.cosine_lr(0.5, 1.0) == pytest.approx(0.5)
    assert schedules.cosine_lr(1.0, 1.0) == pytest.approx(0.0)
    assert schedules.exponential_lr(0, 100, 1e-7, 10) == pytest.approx(1e-7)
    assert schedules.exponential_lr(99, 100, 1e-7, 10) == pytest.approx(10)
    mid = schedules.exponential_lr(49.5, 100, 1e-7, 10)
    assert math.log10(mid) == pytest.approx(-3)


def test_spread_lr_follows_fastai_conventions():
    assert spread_lr(slice(1e-4, 1e-2), 3) == pytest.approx([1e-4, 1e-3, 1e-2])
    assert spread_lr(slice(1e-2), 3) == pytest.approx([1e-3, 1e-3, 1e-2])
    assert spread_lr(3e-3, 4) == [3e-3] * 4
    assert spread_lr([1, 2], 2) == [1.0, 2.0]
    with pytest.raises(ValueError, match="one per group"):
        spread_lr([1e-3, 1e-2], 3)
