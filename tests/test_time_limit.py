"""--time-limit: a run plans its folds from its first fold, drops what cannot finish, says so, and still writes a
checked submission from what finished."""
from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import kitbox
from helpers.sk_competition import SkDigits, bayes_recipe, logreg_recipe
from kitbox.errors import InputError
from kitbox.io.runs import read_json
from kitbox.pipeline import budget, cv


def slow_bayes(ctx):
    time.sleep(2.0)  # a recipe whose folds cost 2 s each
    return bayes_recipe(ctx)


def _run(tmp_path, recipes, minutes, **settings):
    comp = SkDigits(recipes)
    comp.load(tmp_path / "data")  # it writes its sample_submission.csv there, as a downloaded competition has
    return kitbox.run(comp, data=tmp_path / "data", run_dir=tmp_path / "runs", time_limit=minutes,
                      out=tmp_path / "submission.csv", progress=False, log=lambda *_: None, **settings)


def test_a_recipe_that_cannot_finish_in_time_is_left_out_and_the_submission_comes_from_the_rest(tmp_path):
    # 12 s, 5 of them kept for the blend: after the first folds (~2 s) the slow recipe needs ~8 s more
    report = _run(tmp_path, {"logreg": logreg_recipe, "slow": slow_bayes}, minutes=0.2)
    assert report.blend["recipes"] == ["logreg"]
    assert report.recipes["logreg"]["missing"] == []
    assert report.recipes["slow"]["missing"] == [1, 2, 3, 4]  # its first fold ran, to estimate the rest
    assert any(n.startswith("slow: left out of the blend (its other folds need about") for n in report.notes)
    assert "slow" in report.summary() and "(left out of the blend)" in report.summary()
    sub = pd.read_csv(report.submission)
    assert len(sub) == 360 and set(sub.columns) == {"ImageId", "Label"}
    assert report.blend["rows"] == 1437  # every training row: logreg finished its five folds

    # the same command with more time reuses both first folds (the slow one costs nothing now) and completes it
    start = time.time()
    again = _run(tmp_path, {"logreg": logreg_recipe, "slow": slow_bayes}, minutes=1.0)
    assert again.blend["recipes"] == ["logreg", "slow"]
    assert 7.5 < time.time() - start < 30  # four slow folds of 2 s trained, not five


def test_when_no_recipe_can_finish_the_best_finished_folds_make_the_submission(tmp_path):
    report = _run(tmp_path, {"slow": slow_bayes}, minutes=0.15)  # 9 s: 4 for training, each fold takes 2
    assert report.blend["recipes"] == ["slow"]
    assert report.recipes["slow"]["missing"] == [1, 2, 3, 4]
    fold0_rows = report.recipes["slow"]["oof_rows"]
    assert report.blend["rows"] == fold0_rows < 1437  # scored on the finished fold's rows only
    assert any("no recipe finished every fold" in n for n in report.notes)
    assert report.submission.exists() and len(pd.read_csv(report.submission)) == 360


def test_estimates_scale_with_training_rows_and_count_the_refit():
    folds = np.repeat(np.arange(5), 200)  # 1000 rows, 800 train rows a fold
    rp = cv.RecipePlan("r", None, None, {}, config_dir=Path("/nonexistent"))
    done = cv.FinishedFold(0, np.arange(200), np.zeros(200), np.zeros(10), 0.5, seconds=10.0)
    res = cv.RecipeFolds("r", rp.config_dir, 1000, {0: done}, [1, 2, 3, 4])
    folds_left, refit = budget._estimates(rp, res, folds, refit=True)
    assert folds_left == pytest.approx(40.0) and refit == pytest.approx(12.5)  # 4 x 800 rows, then 1000 rows
    assert budget._estimates(rp, res, folds, refit=False)[1] == 0.0


def test_bad_limits_are_one_clear_error(tmp_path):
    with pytest.raises(InputError, match="--time-limit 0: give the minutes"):
        _run(tmp_path, {"logreg": logreg_recipe}, minutes=0)
    with pytest.raises(InputError, match="leave out --folds LIST"):
        _run(tmp_path, {"logreg": logreg_recipe}, minutes=5, folds=[0, 1])


def test_work_cached_for_the_other_folds_is_not_counted_again():
    folds = np.repeat(np.arange(5), 200)
    rp = cv.RecipePlan("r", None, None, {}, config_dir=Path("/nonexistent"))
    # fold 0 took 30 s, 20 of them computing features every later fold loads from the cache
    done = cv.FinishedFold(0, np.arange(200), np.zeros(200), np.zeros(10), 0.5, seconds=30.0,
                           info={"one_time_seconds": 20.0})
    res = cv.RecipeFolds("r", rp.config_dir, 1000, {0: done}, [1, 2, 3, 4])
    assert budget._estimates(rp, res, folds, refit=False)[0] == pytest.approx(40.0)


def test_a_fold_records_the_one_time_work_it_did(tmp_path):
    from kitbox.io.runs import one_time_work

    def caching_recipe(ctx):
        if ctx.fold == 0:
            with one_time_work():
                time.sleep(0.3)  # stands for computing features the other folds reuse
        return logreg_recipe(ctx)

    report = _run(tmp_path, {"cached": caching_recipe}, minutes=1.0)
    folders = [d for d in (tmp_path / "runs" / "cached").iterdir() if d.is_dir()]
    infos = [read_json(folders[0] / f"fold{k}" / "done.json")["info"] for k in range(5)]
    assert infos[0]["one_time_seconds"] >= 0.3 and all("one_time_seconds" not in i for i in infos[1:])
    assert report.blend["recipes"] == ["cached"]
