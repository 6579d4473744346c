"""The Rossmann recipe card on its embedded sample (and on the full Kaggle data when ../shared has it): features,
the time holdout, fold statistics that never see the predicted days, bad input, the whole run, the submission."""
from __future__ import annotations

import shutil
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import kitbox
from competitions.rossmann import Rossmann
from competitions.rossmann_features import EVENT_DAYS_CAP, event_features, extend_calendar
from kitbox.adapt.contract import FoldContext, RunSettings
from kitbox.errors import InputError
from kitbox.recipes.tabular import _gbm_inputs, model_target
from helpers.paths import shared_path


@pytest.fixture(scope="module")
def comp():
    return Rossmann()


@pytest.fixture(scope="module")
def data(comp):
    return comp.load(comp.sample_dir)


def test_sample_loads_as_a_mini_competition(comp, data):
    assert data.is_sample and data.extra["has_external"] and data.task == "regression" and data.extra["log_target"]
    assert len(data.test) == len(data.sample_submission)
    assert set(data.test["Id"]) == set(data.sample_submission["Id"])
    assert (data.train["Sales"] > 0).all() and (data.train["Open"] == 1).all()  # closed / zero days dropped
    assert data.train["Store"].nunique() >= 20
    # the external tables joined: weather and trend for (nearly) every row
    assert data.train["Mean_TemperatureC"].notna().mean() > 0.99 and data.train["trend"].notna().mean() > 0.99
    for name in data.columns.cat + data.columns.cont:
        assert name in data.test.columns, name


def test_event_features_are_consistent(data):
    df = data.train
    assert (df.loc[df["Promo"] == 1, "AfterPromo"] == 0).all()
    assert (df.loc[df["Promo"] == 0, "AfterPromo"] > 0).all()
    assert df["Promo_bw"].between(0, 7).all() and df["Promo_fw"].between(0, 7).all()
    assert (df.loc[df["Promo"] == 1, "Promo_bw"] >= 1).all()  # a promo day counts itself in both windows
    assert (df["AfterClosed"] > 0).all()  # training rows are open days: the last closure was before
    # test rows see train's history: the first test day's distance to the last promo is not "unknown"
    first = data.test[data.test["Date"] == data.test["Date"].min()]
    assert (first["AfterPromo"] < EVENT_DAYS_CAP).all()


def test_the_last_test_week_sees_the_next_sunday_and_promo_as_training_days_do():
    # two stores, closed on Sundays, promo Mon-Fri every other week; the data ends on a Friday
    dates = pd.date_range("2015-06-01", "2015-07-31")  # Monday .. Friday
    days = pd.DataFrame({"Date": dates})
    rows = pd.concat([days.assign(Store=s) for s in (1, 2)], ignore_index=True)
    weekday = rows["Date"].dt.day_of_week
    rows["Open"] = (weekday != 6).astype(int)
    rows["Promo"] = (((rows["Date"] - dates[0]).dt.days // 7 % 2 == 0) & (weekday < 5)).astype(int)
    rows["StateHoliday"], rows["SchoolHoliday"] = "0", 0
    plain, padded = rows.copy(), rows.copy()
    event_features(plain)
    event_features(padded, after=extend_calendar(padded))
    last = rows["Date"] >= "2015-07-27"  # Monday .. Friday of the last week: the next Sunday is past the data
    assert (plain.loc[last, "BeforeClosed"] == EVENT_DAYS_CAP).all()  # "no closure in sight", as no training day is
    assert padded.loc[last, "BeforeClosed"].tolist() == [6, 5, 4, 3, 2] * 2
    assert (padded.loc[last, "Closed_fw"] == 1).all()
    # a promo day is 0 days from a promo both ways, the padded days included
    friday = rows["Date"] == "2015-07-31"
    assert (padded.loc[friday, "BeforePromo"] == 0).all() and (padded.loc[friday, "AfterPromo"] == 0).all()
    # the features of days whose look-ahead lies inside the data do not change
    early = rows["Date"] < "2015-07-20"
    cols = [c for c in plain.columns if c.startswith(("Before", "After")) and "Holiday" not in c]
    cols += [c for c in plain.columns if c.endswith(("_fw", "_bw"))]
    pd.testing.assert_frame_equal(plain.loc[early, cols], padded.loc[early, cols])
    # the padded days never become rows
    assert len(padded) == len(rows)


def test_time_holdout_is_the_last_weeks_as_long_as_the_test_period(comp, data):
    folds = comp.split(data, 1, seed=0)
    assert set(np.unique(folds)) == {-1, 0}
    dates = data.train["Date"]
    test_weeks = ((data.test["Date"].max() - data.test["Date"].min()).days + 1) // 7
    assert dates[folds == 0].min() == dates.max() - pd.Timedelta(days=7 * test_weeks - 1)
    assert dates[folds == -1].max() < dates[folds == 0].min()


def test_more_folds_are_earlier_periods_each_trained_on_the_days_before_it(comp, data, tmp_path):
    from kitbox.pipeline.cv import RecipePlan, fold_context

    folds = comp.split(data, 3, seed=0)
    assert set(folds) == {-1, 0, 1, 2} and comp.forward_folds
    dates = data.train["Date"]
    spans = [(dates[folds == k].min(), dates[folds == k].max()) for k in range(3)]
    assert all((end - start).days == 41 for start, end in spans)  # six weeks each, the test period's length
    assert all(spans[k + 1][1] + pd.Timedelta(days=1) == spans[k][0] for k in range(2))  # back to back, fold 0 last
    plan = RecipePlan("r", None, None, {}, tmp_path, forward=True)
    for k in range(3):  # every fold trains on the days before its period, never on a later one
        ctx = fold_context(plan, k, folds, data, comp.targets(data), 0, RunSettings())
        assert dates.iloc[ctx.train_idx].max() < spans[k][0] and len(ctx.train_idx) == (dates < spans[k][0]).sum()


def _fold_context(data, comp, tmp_path, options) -> FoldContext:
    folds = comp.split(data, 1, seed=0)
    return FoldContext(0, np.flatnonzero(folds != 0), np.flatnonzero(folds == 0), data, comp.targets(data),
                       tmp_path, tmp_path, options=options)


def test_sales_statistics_never_see_the_days_predicted(comp, data, tmp_path):
    options = comp.recipes()["lightgbm"].make_options()
    ctx = _fold_context(data, comp, tmp_path, options)
    before = _gbm_inputs(ctx, model_target(ctx))
    changed = data.train.copy()
    changed.loc[ctx.valid_idx, ["Sales", "Customers"]] *= 3  # the holdout's sales: what the model must predict
    moved = _fold_context(replace(data, train=changed), comp, tmp_path, options)
    after = _gbm_inputs(moved, model_target(moved))
    assert "Store_y_mean" in before.names and "Store_trend" in before.names
    for part in ("train", "valid", "test"):
        np.testing.assert_array_equal(getattr(before, part), getattr(after, part))
    first = ctx.train_idx[0]
    same_store = ctx.train_idx[data.train["Store"].to_numpy()[ctx.train_idx] == data.train["Store"].iloc[first]]
    mean = np.log1p(data.train["Sales"].to_numpy(np.float64)[same_store]).mean()
    assert before.train[0, before.names.index("Store_y_mean")] == pytest.approx(mean, rel=1e-6)


def test_submission_zero_for_closed_and_in_sample_order(comp, data):
    sub = comp.submission(data, np.full(len(data.test), 5000.0))
    assert sub["Id"].tolist() == data.sample_submission["Id"].tolist()
    closed = data.test.set_index("Id").loc[sub["Id"], "Open"].to_numpy() == 0
    assert closed.any()
    assert (sub["Sales"][closed] == 0).all() and (sub["Sales"][~closed] == 5000).all()


def test_rmspe_factor_is_the_best_multiplier(comp):
    rng = np.random.default_rng(0)
    y = rng.uniform(1000, 9000, 500)
    pred = y * rng.lognormal(0, 0.15, 500)
    scale = comp.decide(pred, y)["scale"]
    assert 0.9 < scale < 1.0  # noisy predictions: RMSPE wants them a little lower
    best = comp.score(y, comp.apply(pred, {"scale": scale}))
    for other in (scale * 0.99, scale * 1.01):
        assert best < comp.score(y, pred * other)


# ---------------------------------------------------------------------------------------------- bad input
def _copy_sample(comp, tmp_path) -> Path:
    folder = tmp_path / "rossmann-store-sales"
    shutil.copytree(comp.sample_dir, folder)
    return folder


def _rewrite(folder: Path, name: str, change) -> None:
    path = folder / f"{name}.gz"
    df = pd.read_csv(path, dtype={"StateHoliday": str})
    change(df)
    df.to_csv(path, index=False)


def _set(column, row, value):
    def change(df):
        df[column] = df[column].astype(object)
        df.loc[row, column] = value
    return change


@pytest.mark.parametrize("name,change,message", [
    ("train.csv", lambda df: df.pop("Promo"), r"train\.csv\.gz lacks column\(s\) \['Promo'\]"),
    ("store.csv", lambda df: df.pop("StoreType"), r"store\.csv\.gz lacks column\(s\) \['StoreType'\]"),
    ("train.csv", _set("Sales", 3, -5), r"train\.csv: column 'Sales' is negative .* e\.g\. -5"),
    ("train.csv", _set("Date", 7, "31/07/2015"), r"train\.csv: .* column 'Date' .* '31/07/2015'"),
    ("test.csv", _set("Store", 0, 99999), r"test\.csv: column 'Store' has value\(s\) \[99999\]"),
])
def test_bad_input_is_one_line_naming_the_file_column_and_value(comp, tmp_path, name, change, message):
    folder = _copy_sample(comp, tmp_path)
    _rewrite(folder, name, change)
    with pytest.raises(InputError, match=message) as err:
        comp.load(folder)
    assert "\n" not in str(err.value)


def test_missing_file_names_the_file_and_the_folder(comp, tmp_path):
    folder = _copy_sample(comp, tmp_path)
    (folder / "store.csv.gz").unlink()
    with pytest.raises(InputError, match=r"store\.csv not found") as err:
        comp.load(folder)
    assert str(folder) in str(err.value) and "\n" not in str(err.value)


def test_works_without_the_external_tables(comp, tmp_path):
    folder = _copy_sample(comp, tmp_path)
    for name in ("weather", "googletrend", "store_states", "state_names"):
        (folder / f"{name}.csv.gz").unlink()
    data = comp.load(folder)
    assert not data.extra["has_external"] and any("external tables" in n for n in data.notes)
    assert "State" not in data.columns.cat and "trend" not in data.columns.cont


# ---------------------------------------------------------------------------------------------- the whole run
def test_quick_run_on_the_sample_blends_refits_and_writes_the_submission(comp, tmp_path):
    report = kitbox.run(comp, comp.sample_dir, quick=True, run_dir=tmp_path / "run", out=tmp_path / "sub.csv",
                        progress=False)
    assert set(report.recipes) == {"entity_embedding", "lightgbm"}
    assert all(r["test_from"] == "refit on all rows" for r in report.recipes.values())
    assert report.recipes["lightgbm"]["oof"] < 0.2, report.recipes  # a store's mean alone scores ~0.25
    assert 0.9 < report.blend["decided"]["scale"] < 1.05
    sub = pd.read_csv(report.submission, dtype={"Id": str})
    data = comp.load(comp.sample_dir)
    closed = data.test.set_index("Id").loc[sub["Id"], "Open"].to_numpy() == 0
    assert (sub["Sales"][closed] == 0).all() and (sub["Sales"][~closed] > 0).all()


def test_full_data_holdout_dates():
    full = shared_path("data", "rossmann-store-sales")
    comp = Rossmann()
    data = comp.load(full)
    folds = comp.split(data, 1, seed=0)
    valid_dates = data.train["Date"][folds == 0]
    # the last whole weeks of train, as many as the test period has (6), like fast.ai's notebook
    test_weeks = ((data.test["Date"].max() - data.test["Date"].min()).days + 1) // 7
    assert test_weeks == 6 and valid_dates.max() == data.train["Date"].max()
    assert (valid_dates.max() - valid_dates.min()).days + 1 == 7 * test_weeks
    assert len(data.test) == len(data.sample_submission) and set(data.test["Store"]) <= set(data.train["Store"])
    assert data.test["Open"].notna().all() and any("without 'Open'" in n for n in data.notes)
