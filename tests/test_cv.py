"""Fold schemes and the fold runner: every row validated exactly once, resume after a crash, --folds subsets.

The runner is tested with a real small competition (tests/helpers/sk_competition.py): scikit-learn's bundled 8x8
digits (1,797 images) in Digit Recognizer's layout, with scikit-learn recipes that train in well under a second.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from helpers.sk_competition import SkDigits, bayes_recipe, logreg_recipe
from kitbox.pipeline import cv, splits
from kitbox.adapt.contract import FoldPredictions
from kitbox.metrics import get_metric

@pytest.fixture(scope="module")
def digits(tmp_path_factory):
    comp = SkDigits()
    data = comp.load(tmp_path_factory.mktemp("sk-digits"))  # it writes its sample_submission.csv there
    return comp, data, comp.targets(data)


def fold_files(run_dir: Path) -> dict[str, bytes]:
    return {str(p.relative_to(run_dir)): p.read_bytes() for p in sorted(run_dir.rglob("*")) if p.is_file()}


# ---------------------------------------------------------------------------------------------- fold schemes


@pytest.mark.parametrize("n_folds", [2, 5])
def test_kfold_schemes_give_every_row_one_fold(n_folds):
    rng = np.random.default_rng(0)
    y = rng.integers(0, 3, 500)
    for folds in [splits.kfold(500, n_folds, 1), splits.stratified_kfold(y, n_folds, 1),
                  splits.group_kfold(rng.integers(0, 60, 500), n_folds, 1)]:
        assert folds.shape == (500,) and set(np.unique(folds)) == set(range(n_folds))
        assert np.bincount(folds).min() >= 500 // n_folds - 60  # roughly balanced
    strat = splits.stratified_kfold(y, n_folds, 1)
    for k in range(n_folds):  # stratified: each fold keeps each class's share within a row or two
        share = np.bincount(y[strat == k], minlength=3) / (strat == k).sum()
        assert np.allclose(share, np.bincount(y) / len(y), atol=0.02)


def test_group_kfold_keeps_groups_together_and_seed_reproduces():
    groups = np.repeat(np.arange(40), 7)
    folds = splits.group_kfold(groups, 4, seed=3)
    assert all(len(np.unique(folds[groups == g])) == 1 for g in range(40))
    assert np.array_equal(folds, splits.group_kfold(groups, 4, seed=3))


def test_multilabel_stratification_keeps_label_frequencies():
    rng = np.random.default_rng(1)
    y = (rng.random((600, 6)) < [0.5, 0.3, 0.1, 0.05, 0.2, 0.02]).astype(int)
    folds = splits.multilabel_stratified_kfold(y, 5, seed=0)
    assert set(np.unique(folds)) == set(range(5))
    for k in range(5):
        assert np.allclose(y[folds == k].mean(0), y.mean(0), atol=0.03)


def test_time_holdout_and_time_blocks_follow_the_calendar():
    dates = pd.Series(pd.date_range("2015-01-01", "2015-07-31", freq="D")).repeat(3).reset_index(drop=True)
    folds = splits.time_holdout(dates, valid_period="42D")
    assert (folds == 0).sum() == 42 * 3 and dates[folds == 0].min() == pd.Timestamp("2015-06-20")
    assert dates[folds == -1].max() < dates[folds == 0].min()
    assert np.array_equal(splits.time_holdout(dates, cutoff="2015-06-20"), folds)
    blocks = splits.time_blocks(dates, 4)
    assert list(np.unique(blocks)) == [0, 1, 2, 3]
    assert all(dates[blocks == k].max() < dates[blocks == k + 1].min() for k in range(3))
    with pytest.raises(ValueError, match="holdout"):
        splits.time_holdout(dates, cutoff="2016-01-01")


def test_check_folds_rejects_gaps_and_wrong_length():
    with pytest.raises(ValueError, match="no gaps"):
        splits.check_folds(np.array([0, 2, 2, 0]), 4)
    with pytest.raises(ValueError, match="one fold id per training row"):
        splits.check_folds(np.array([0, 1]), 3)


# ---------------------------------------------------------------------------------------------- fold runner


def test_oof_covers_every_training_row_exactly_once(digits, tmp_path):
    comp, data, y = digits
    folds = comp.split(data, 5, 0)
    results = cv.run_cv(data, folds, {"logreg": logreg_recipe}, y, "accuracy", tmp_path, log=lambda *_: None)
    res = results["logreg"]
    valid_rows = np.concatenate([rec.valid_idx for rec in res.finished.values()])
    assert np.array_equal(np.sort(valid_rows), np.arange(len(data.train)))  # once each, none left out
    oof, mask = res.oof()
    assert mask.all() and oof.shape == (len(data.train), 10) and np.allclose(oof.sum(1), 1)
    report = cv.cv_report(results, y, "accuracy")["logreg"]
    assert report["oof"] > 0.9 and len(report["folds"]) == 5
    assert report["mean"] == pytest.approx(np.mean(list(report["folds"].values())))
    assert report["std"] == pytest.approx(np.std(list(report["folds"].values())))
    assert report["oof_rows"] == len(data.train)
    assert cv.recipe_test_pred(res, "accuracy").shape == (len(data.test), 10)


class Crash(Exception):
    pass


def counting(recipe, calls: list, crash_on=None, partial=False):
    """Wrap a recipe: log each fold it trains; raise on ``crash_on`` (after writing half a fold when ``partial``)."""

    def wrapped(ctx):
        calls.append(ctx.fold)
        if ctx.fold == crash_on:
            if partial:  # a kill mid-fold: a checkpoint and a truncated prediction file are on disk
                (ctx.fold_dir / "model.ckpt").write_bytes(b"half a checkpoint")
                (ctx.fold_dir / "oof.npy").write_bytes(b"\x93NUMPY truncated")
            raise Crash(f"killed in fold {ctx.fold}")
        return recipe(ctx)

    return wrapped


@pytest.mark.parametrize("partial", [False, True], ids=["between-folds", "mid-fold"])
def test_resume_after_a_crash_trains_only_the_missing_folds(digits, tmp_path, partial):
    comp, data, y = digits
    folds = comp.split(data, 5, 0)
    calls = []
    with pytest.raises(Crash):
        cv.run_cv(data, folds, {"logreg": counting(logreg_recipe, calls, crash_on=2, partial=partial)},
                  y, "accuracy", tmp_path, log=lambda *_: None)
    assert calls == [0, 1, 2]
    assert [cv.is_done(tmp_path / "logreg", k) for k in range(5)] == [True, True, False, False, False]
    finished = {k: v for k, v in fold_files(tmp_path).items() if k.startswith(("logreg/fold0", "logreg/fold1"))}

    calls.clear()
    lines = []
    results = cv.run_cv(data, folds, {"logreg": counting(logreg_recipe, calls)}, y, "accuracy", tmp_path,
                        log=lines.append)
    assert calls == [2, 3, 4]  # finished folds are loaded, not retrained
    assert sum("finished earlier" in line for line in lines) == 2
    after = fold_files(tmp_path)
    assert all(after[k] == v for k, v in finished.items())  # byte-identical
    assert results["logreg"].complete and results["logreg"].oof()[1].all()
    assert np.load(tmp_path / "logreg" / "fold2" / "oof.npy").shape == ((folds == 2).sum(), 10)


def test_fold_subset_then_rest(digits, tmp_path):
    comp, data, y = digits
    folds = comp.split(data, 5, 0)
    calls = []
    recipes = {"bayes": counting(bayes_recipe, calls)}
    part = cv.run_cv(data, folds, recipes, y, "accuracy", tmp_path, only_folds=[0, 2], log=lambda *_: None)
    assert calls == [0, 2] and part["bayes"].missing == [1, 3, 4] and not part["bayes"].complete
    oof, mask = part["bayes"].oof()
    assert mask.sum() == np.isin(folds, [0, 2]).sum() and np.isnan(oof[~mask]).all()
    assert cv.cv_report(part, y, "accuracy")["bayes"]["missing"] == [1, 3, 4]
    rest = cv.run_cv(data, folds, recipes, y, "accuracy", tmp_path, log=lambda *_: None)
    assert calls == [0, 2, 1, 3, 4] and rest["bayes"].complete
    with pytest.raises(ValueError, match="folds"):
        cv.run_cv(data, folds, recipes, y, "accuracy", tmp_path, only_folds=[7], log=lambda *_: None)


def test_changed_folds_are_not_mixed_with_old_predictions(digits, tmp_path):
    comp, data, y = digits
    cv.run_cv(data, comp.split(data, 5, 0), {"bayes": bayes_recipe}, y, "accuracy", tmp_path,
              only_folds=[0], log=lambda *_: None)
    with pytest.raises(ValueError, match="other validation rows"):
        cv.run_cv(data, comp.split(data, 5, 1), {"bayes": bayes_recipe}, y, "accuracy", tmp_path, log=lambda *_: None)


def test_a_recipe_returning_wrong_shapes_or_nan_gets_a_clear_error(digits, tmp_path):
    comp, data, y = digits
    folds = comp.split(data, 5, 0)

    def short(ctx):
        return FoldPredictions(oof=np.zeros((3, 10)), test=np.zeros((len(ctx.data.test), 10)))

    def diverged(ctx):
        return FoldPredictions(oof=np.full((len(ctx.valid_idx), 10), np.nan), test=np.zeros((len(ctx.data.test), 10)))

    with pytest.raises(ValueError, match=r"recipe 'short' fold 0: oof predictions have shape \(3, 10\)"):
        cv.run_cv(data, folds, {"short": short}, y, "accuracy", tmp_path, log=lambda *_: None)
    with pytest.raises(ValueError, match="NaN or inf"):
        cv.run_cv(data, folds, {"diverged": diverged}, y, "accuracy", tmp_path, log=lambda *_: None)
    assert not cv.is_done(tmp_path / "short", 0) and not cv.is_done(tmp_path / "diverged", 0)


def test_snapshot_predictions_are_averaged_per_fold(digits, tmp_path):
    comp, data, y = digits
    folds = comp.split(data, 2, 0)
    n_test = len(data.test)

    def sgdr_like(ctx):
        oof = np.eye(10)[y[ctx.valid_idx]]
        snaps = [np.full((n_test, 10), 0.1), np.full((n_test, 10), 0.3)]
        return FoldPredictions(oof=oof, test=np.full((n_test, 10), 0.9), snapshots_test=snaps, info={"epochs": 3})

    res = cv.run_cv(data, folds, {"sgdr": sgdr_like}, y, get_metric("accuracy"), tmp_path, log=lambda *_: None)
    assert np.allclose(res["sgdr"].test(), 0.2)  # snapshot mean, not the final model's 0.9
    assert np.allclose(np.load(tmp_path / "sgdr" / "fold0" / "test_final.npy"), 0.9)
    assert res["sgdr"].finished[0].info == {"epochs": 3, "snapshots": 2}


def test_atomic_writes_leave_the_old_file_when_a_write_fails(tmp_path):
    from kitbox.io.runs import atomic_write_bytes, load_npy, save_npy

    path = save_npy(tmp_path / "oof.npy", np.arange(5))
    with pytest.raises(TypeError):
        atomic_write_bytes(path, "not bytes")  # fails inside the write, like a kill mid-write
    assert np.array_equal(load_npy(path), np.arange(5))
    assert [p.name for p in tmp_path.iterdir()] == ["oof.npy"]  # no temporary file left behind
