"""kitbox.tabular: the processor (fitted on train only, saved as JSON), the entity-embedding model, the vectorized
event features, embedding export and the LightGBM helper."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from kitbox.training.groups import layer_groups
from kitbox.tabular.features import (GroupTrend, add_datepart, days_since_until, group_statistics, group_trend,
                                     parse_groups, parse_trend, show_groups, show_trend, window_counts)
from kitbox.tabular.gbm import category_levels, gbm_frame, objective, stack_columns
from kitbox.tabular.model import (TabularModel, add_embeddings, embedding_frames, embedding_width, load_embeddings,
                                  save_embeddings)
from kitbox.tabular.processor import TabularProcessor


@pytest.fixture
def frames():
    train = pd.DataFrame({"shop": ["a", "b", "a", None, "c"], "year": [2013.0, 2014.0, np.nan, 2013.0, 2014.0],
                          "dist": [100.0, np.nan, 300.0, 500.0, 700.0], "temp": [1.0, 2.0, 3.0, 4.0, 5.0]})
    test = pd.DataFrame({"shop": ["c", "zzz", None], "year": [2014, 1999, 2013], "dist": [np.nan, 100.0, 1e6],
                         "temp": [3.0, np.nan, 0.0]})
    return train, test


def test_processor_codes_reserve_zero_for_missing_and_unseen(frames):
    train, test = frames
    proc = TabularProcessor(["shop", "year"], ["dist", "temp"]).fit(train)
    x_cat, _ = proc.transform(test)
    # shop: a=1 b=2 c=3; unseen "zzz" and None -> 0. year: 2013=1 2014=2; ints match the float categories of train
    assert x_cat[:, 0].tolist() == [3, 0, 0]
    assert x_cat[:, 1].tolist() == [2, 0, 1]
    assert proc.cardinalities[:2] == [4, 3]


def test_processor_fills_medians_flags_missing_and_normalizes_on_train_statistics(frames):
    train, test = frames
    proc = TabularProcessor(["shop"], ["dist", "temp"]).fit(train)
    assert proc.na_flags == ["dist"]  # temp had no NaN in train: no flag column even though test has one
    assert proc.all_cat_names == ["shop", "dist_na"]
    x_cat, x_cont = proc.transform(train)
    np.testing.assert_allclose(x_cont.mean(0), 0, atol=1e-6)
    np.testing.assert_allclose(x_cont.std(0), 1, atol=1e-5)
    assert x_cat[:, 1].tolist() == [1, 2, 1, 1, 1]  # 2 marks the filled row
    t_cat, t_cont = proc.transform(test)
    median = np.median([100.0, 300.0, 500.0, 700.0])
    assert t_cont[0, 0] == pytest.approx((median - proc.means["dist"]) / proc.stds["dist"], rel=1e-6)
    assert t_cat[:, 1].tolist() == [2, 1, 1]
    assert np.isfinite(t_cont).all()  # the unflagged NaN in test 'temp' is filled too


def test_processor_json_round_trip_gives_identical_inputs(frames, tmp_path):
    train, test = frames
    proc = TabularProcessor(["shop", "year"], ["dist", "temp"]).fit(train)
    loaded = TabularProcessor.load(proc.save(tmp_path / "run" / "processor.json"))
    for a, b in zip(proc.transform(test), loaded.transform(test)):
        np.testing.assert_array_equal(a, b)
    x_cat, x_cont, y = loaded.tensors(test, target=[1.0, 2.0, 3.0])
    assert x_cat.dtype == torch.int64 and x_cont.dtype == torch.float32 and y.shape == (3,)


def test_processor_names_a_missing_column(frames):
    train, _ = frames
    proc = TabularProcessor(["shop"], ["dist"]).fit(train)
    with pytest.raises(KeyError, match="dist"):
        proc.transform(train.drop(columns="dist"))


def test_embedding_width_rule():
    assert [embedding_width(n) for n in (2, 8, 1116)] == [2, 5, 81]
    assert embedding_width(10**7) == 600


def test_model_shapes_groups_and_per_layer_dropout():
    model = TabularModel([10, 1116, 3], n_cont=4, layers=(64, 32), ps=(0.1, 0.2), emb_drop=0.04)
    out = model(torch.randint(0, 3, (7, 3)), torch.randn(7, 4))
    assert out.shape == (7, 1)
    assert [m.p for m in model.body if isinstance(m, torch.nn.Dropout)] == [0.1, 0.2]
    assert [type(m).__name__ for m in model.body[:4]] == ["Linear", "ReLU", "BatchNorm1d", "Dropout"]
    groups = layer_groups(model)  # raises if a parameter is left out
    assert len(groups) == 3 and sum(len(g) for g in groups) == len(list(model.parameters()))
    assert model.embeds[1].embedding_dim == 81
    with pytest.raises(ValueError, match="ps has 1"):
        TabularModel([10], 2, layers=(8, 4), ps=[0.1])


def test_embedding_export_maps_codes_to_their_vectors(frames, tmp_path):
    train, test = frames
    proc = TabularProcessor(["shop", "year"], ["dist"]).fit(train)
    model = TabularModel(proc.cardinalities, 1, layers=(8,), ps=(0.0,))
    found = embedding_frames(model, proc)
    assert list(found) == ["shop", "year", "dist_na"]
    assert found["shop"].shape == (4, embedding_width(4))
    assert found["shop"].index[1:].tolist() == ["a", "b", "c"]
    x_cat, _ = proc.transform(test)
    wide = add_embeddings(x_cat, load_embeddings(_saved(found, tmp_path)), columns=["shop"])
    np.testing.assert_allclose(wide.to_numpy(), model.embeds[0].weight.detach().numpy()[x_cat[:, 0]], atol=1e-6)


def _saved(found, tmp_path):
    path = tmp_path / "embeddings.json"
    save_embeddings(found, path)
    return path


def test_add_datepart_known_dates():
    df = add_datepart(pd.DataFrame({"Date": pd.to_datetime(["2015-07-31", "2015-01-01"])}), "Date")
    assert df["Week"].tolist() == [31, 1] and df["Dayofweek"].tolist() == [4, 3]
    assert df["Is_month_end"].tolist() == [1, 0] and df["Is_year_start"].tolist() == [0, 1]
    assert df["Dayofyear"].tolist() == [212, 1]


def _naive_events(group, days, event, window):
    """Per-row reference with Python loops: what the vectorized helpers must reproduce."""
    since, until, back, fwd = [], [], [], []
    for g, d in zip(group, days):
        mine = [(dd, e) for gg, dd, e in zip(group, days, event) if gg == g]
        before = [d - dd for dd, e in mine if e and dd <= d]
        after = [dd - d for dd, e in mine if e and dd >= d]
        since.append(min(before) if before else np.nan)
        until.append(min(after) if after else np.nan)
        back.append(sum(e for dd, e in mine if d - window < dd <= d))
        fwd.append(sum(e for dd, e in mine if d <= dd < d + window))
    return np.array(since), np.array(until), np.array(back), np.array(fwd)


def test_event_features_match_a_naive_loop_with_gaps_and_shuffled_rows():
    rng = np.random.default_rng(0)
    rows = [(g, d) for g in (5, 9, 2) for d in range(60) if not (g == 9 and 20 <= d < 35)]  # store 9 has a gap
    rows = [rows[i] for i in rng.permutation(len(rows))]
    group = np.array([g for g, _ in rows])
    days = np.array([d for _, d in rows])
    event = rng.random(len(rows)) < 0.15
    dates = pd.Timestamp("2014-03-01") + pd.to_timedelta(days, unit="D")
    since, until = days_since_until(group, dates, event)
    back, fwd = window_counts(group, dates, event, days=7)
    ref = _naive_events(group, days, event, 7)
    np.testing.assert_array_equal(since, ref[0])
    np.testing.assert_array_equal(until, ref[1])
    np.testing.assert_array_equal(back, ref[2])
    np.testing.assert_array_equal(fwd, ref[3])


def test_lightgbm_helper_learns_a_signal():
    from kitbox.tabular.gbm import fit_lightgbm, predict_lightgbm

    rng = np.random.default_rng(0)
    x = pd.DataFrame({"a": rng.normal(size=2000), "b": rng.integers(0, 5, 2000)})
    y = 2 * x["a"] + x["b"] + rng.normal(scale=0.1, size=2000)
    booster = fit_lightgbm(x[:1500], y[:1500], x[1500:], y[1500:], num_boost_round=200)
    pred = predict_lightgbm(booster, x[1500:])
    assert np.sqrt(np.mean((pred - y[1500:]) ** 2)) < 0.3 * y.std()


def test_gbm_frame_codes_keep_order_and_leave_unseen_missing(frames):
    train, test = frames
    levels = category_levels(train, ["shop", "year"])
    assert levels == {"shop": ["a", "b", "c"], "year": [2013.0, 2014.0]}
    x = gbm_frame(test, levels, ["dist", "temp"])
    assert list(x.columns) == ["shop", "year", "dist", "temp"] and (x.dtypes == np.float32).all()
    np.testing.assert_array_equal(x["shop"], [2, np.nan, np.nan])  # "zzz" unseen, None missing: NaN, not a code
    np.testing.assert_array_equal(x["year"], [1, np.nan, 0])  # the int 2014 is the float category 2014.0
    np.testing.assert_array_equal(x["temp"], [3.0, np.nan, 0.0])  # NaN stays NaN: trees route it themselves
    matrix = stack_columns([x[["shop"]], x[["dist", "temp"]] * 2])
    assert matrix.dtype == np.float32 and matrix.flags.c_contiguous and matrix.shape == (3, 3)
    np.testing.assert_array_equal(matrix[:, 2], [6.0, np.nan, 0.0])


def test_lightgbm_objective_follows_the_task():
    assert objective("regression") == {"objective": "regression"}
    assert objective("binary") == objective("multilabel") == {"objective": "binary"}  # one booster per label
    assert objective("multiclass", 4) == {"objective": "multiclass", "num_class": 4}
    with pytest.raises(ValueError, match="ranking"):
        objective("ranking")


def _group_rows():
    rng = np.random.default_rng(1)
    train = pd.DataFrame({"store": rng.integers(0, 4, 300), "promo": rng.integers(0, 2, 300),
                          "t": rng.integers(0, 100, 300).astype(float)})
    y = 0.5 * train["store"] + 0.02 * train["t"] * (train["store"] == 1) + rng.normal(0, 0.1, 300)
    apply = pd.DataFrame({"store": [1, 3, 9], "promo": [0, 1, 1], "t": [120.0, 50.0, 10.0]})
    return train, y.to_numpy(), apply


def test_group_statistics_are_the_training_rows_means_and_stds():
    train, y, apply = _group_rows()
    assert parse_groups("store; store+promo ;") == (("store",), ("store", "promo"))
    (stats,) = group_statistics(train, {"y": y, "t": train["t"].to_numpy()}, parse_groups("store;store+promo"), [apply])
    mine = (train["store"] == 1) & (train["promo"] == 0)
    assert stats.loc[0, "store_y_mean"] == pytest.approx(y[train["store"] == 1].mean(), rel=1e-6)
    assert stats.loc[0, "store_promo_y_std"] == pytest.approx(np.std(y[mine], ddof=1), rel=1e-5)
    assert stats.loc[1, "store_t_mean"] == pytest.approx(train.loc[train["store"] == 3, "t"].mean(), rel=1e-6)
    assert stats.loc[2].isna().all()  # store 9 never trained: unknown, not 0


def test_group_and_trend_specs_parse_and_write_back():
    assert show_groups(parse_groups("Store;Store+Promo")) == "Store;Store+Promo"
    assert parse_trend(" Store + Promo @ Elapsed") == GroupTrend(("Store", "Promo"), "Elapsed")
    assert show_trend(parse_trend("Store@Elapsed")) == "Store@Elapsed"
    for bad in ("Store", "@Elapsed", "Store@"):
        with pytest.raises(ValueError, match="GROUP@TIME_COLUMN"):
            parse_trend(bad)


def test_group_trend_is_each_groups_least_squares_line():
    train, y, apply = _group_rows()
    (trend,) = group_trend(train, y, ["store"], "t", [apply], recent=30)
    mine = train["store"] == 1
    slope, intercept = np.polyfit(train.loc[mine, "t"], y[mine], 1)
    assert trend.loc[0, "store_slope"] == pytest.approx(slope, rel=1e-4)
    assert trend.loc[0, "store_trend"] == pytest.approx(intercept + slope * 120.0, rel=1e-4)  # extrapolated
    late = mine & (train["t"] > train["t"].max() - 30)
    assert trend.loc[0, "store_recent"] == pytest.approx(y[late].mean(), rel=1e-5)
    assert trend.loc[2].isna().all()


def test_auto_sizes_follow_the_rows():
    from kitbox.tabular.training import auto_batch_size, auto_epochs, auto_layers

    assert auto_batch_size(844_000) == 1024 and auto_batch_size(30_000) == 512
    assert auto_batch_size(2_000) == 32 and auto_batch_size(50) == 32  # at least 32 steps an epoch, 32 rows a batch
    assert auto_layers(844_000) == (1000, 500) and auto_layers(25_000) == (250, 125)
    assert auto_epochs(844_000, 1024) == 5 and auto_epochs(2_000, 32) == 10  # ~600 steps on small tables
