"""The generic tabular recipes through ``kitbox.run`` on small real tables: a competitor's own ``my_comp.py`` (a few
class attributes on TabularCompetition) loaded by path, for regression (store sales), binary (is the store open)
and multiclass (which holiday). Data: six stores of the embedded Rossmann sample, real rows and values."""
from __future__ import annotations

import json
import textwrap
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import kitbox
from kitbox.adapt.options import OptionError
from kitbox.errors import InputError
from kitbox.metrics import log_loss, rmspe

SAMPLE = Path(__file__).resolve().parents[1] / "competitions" / "samples" / "rossmann-store-sales"
TEST_DAYS = 28  # the last four weeks of the slice are the "test" period


def _sample_rows(n_stores: int = 6) -> pd.DataFrame:
    df = pd.read_csv(SAMPLE / "train.csv.gz", dtype={"StateHoliday": str})
    stores = sorted(df["Store"].unique())[:n_stores]
    df = df[df["Store"].isin(stores)].copy()
    df["Day"] = pd.to_datetime(df["Date"]).dt.day  # 31 values: a continuous column for the inferred split
    df["Month"] = pd.to_datetime(df["Date"]).dt.month
    return df.sort_values(["Date", "Store"]).reset_index(drop=True)


def _write(folder: Path, train: pd.DataFrame, test: pd.DataFrame, sample_cols: list[str], adapter: str) -> Path:
    folder.mkdir(parents=True)
    train.to_csv(folder / "train.csv", index=False)
    test.to_csv(folder / "test.csv", index=False)
    sample = pd.DataFrame({"Id": test["Id"]})
    for col in sample_cols:
        sample[col] = 0
    sample.to_csv(folder / "sample_submission.csv", index=False)
    (folder / "my_comp.py").write_text(textwrap.dedent(adapter))
    return folder


def _split_by_date(df: pd.DataFrame, inputs: list[str], target: str):
    last = pd.to_datetime(df["Date"]) > pd.to_datetime(df["Date"]).max() - pd.Timedelta(days=TEST_DAYS)
    train = df.loc[~last, inputs + [target]].reset_index(drop=True)
    test = df.loc[last, inputs].reset_index(drop=True)
    test.insert(0, "Id", np.arange(1, len(test) + 1))
    return train, test


REGRESSION = """
import kitbox


class StoreSales(kitbox.TabularCompetition):
    slug = "store-sales"
    metric_name = "rmspe"
    default_folds = 2
    refit = True  # test comes from models trained on every row

    def recipes(self):  # the defaults, and the GBM on the network's embeddings
        from kitbox.recipes import tabular

        return {**super().recipes(), "lightgbm_embeddings": tabular.lightgbm_embeddings}
"""
CLASSIFICATION = """
import kitbox


class {name}(kitbox.TabularCompetition):
    slug = "{slug}"
    metric_name = "log_loss"
    default_folds = 2
"""


@pytest.fixture(scope="module")
def comps(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("comps")
    rows = _sample_rows()
    inputs = ["Store", "DayOfWeek", "Promo", "StateHoliday", "SchoolHoliday", "Day"]
    sales = rows[(rows["Open"] == 1) & (rows["Sales"] > 0)]
    holiday = _split_by_date(rows, ["Store", "DayOfWeek", "Month", "Day", "Open", "SchoolHoliday"], "StateHoliday")
    return {
        "regression": _write(root / "regression", *_split_by_date(sales, inputs, "Sales"), ["Sales"], REGRESSION),
        "binary": _write(root / "binary", *_split_by_date(rows, inputs, "Open"), ["Open"],
                         CLASSIFICATION.format(name="StoreOpen", slug="store-open")),
        "multiclass": _write(root / "multiclass", *holiday, sorted(holiday[0]["StateHoliday"].unique()),
                             CLASSIFICATION.format(name="WhichHoliday", slug="which-holiday")),
    }


FAST_GBM = {"max_rounds": 300, "patience": 30}  # a few seconds per booster


def _run(folder: Path, tmp_path: Path, recipes: str, **options):
    fast = FAST_GBM if "lightgbm" in recipes else {}
    return kitbox.run(str(folder / "my_comp.py"), folder, recipes=recipes, options={**fast, **options},
                      run_dir=tmp_path / "run", out=tmp_path / "submission.csv", progress=False, seed=0)


def _done(run_dir: Path, recipe: str, fold: str) -> dict:
    (path,) = (run_dir / recipe).glob(f"*/{fold}/done.json")
    return json.loads(path.read_text())


def _oof(report, name: str) -> float:
    return report.recipes[name]["oof"]


def test_regression_both_recipes_beat_a_constant_and_write_the_submission(comps, tmp_path):
    report = _run(comps["regression"], tmp_path, "lightgbm,entity_embedding")
    y = pd.read_csv(comps["regression"] / "train.csv")["Sales"].to_numpy(np.float64)
    constant = rmspe(y, np.full(len(y), np.median(y)))  # six stores of different size: a constant is far off
    assert _oof(report, "lightgbm") < 0.5 * constant, (report.recipes, constant)
    assert _oof(report, "entity_embedding") < 0.7 * constant, (report.recipes, constant)
    sub = pd.read_csv(report.submission)
    assert list(sub.columns) == ["Id", "Sales"] and len(sub) == len(pd.read_csv(comps["regression"] / "test.csv"))
    assert (sub["Sales"] > 0).all()  # log target: expm1 of the predictions, never below 0


def test_lightgbm_refit_boosts_the_rounds_the_scored_folds_found(comps, tmp_path):
    report = _run(comps["regression"], tmp_path, "lightgbm")
    folds = [_done(report.run_dir, "lightgbm", f"fold{k}") for k in (0, 1)]
    refit = _done(report.run_dir, "lightgbm", "refit")
    assert all(f["info"]["rounds_from"] == "early stopping" and f["info"]["rounds"] < 300 for f in folds)
    found = np.mean([f["info"]["rounds"] for f in folds])
    scale = refit["n_train"] / np.mean([f["n_train"] for f in folds])  # two folds: the refit has twice the rows
    assert refit["info"]["rounds_from"] == "scored folds"
    assert refit["info"]["rounds"] == int(round(found * scale))
    unscaled = _run(comps["regression"], tmp_path / "unscaled", "lightgbm", refit_scale=False)
    assert _done(unscaled.run_dir, "lightgbm", "refit")["info"]["rounds"] == int(round(found))


def test_lightgbm_embeddings_reads_the_networks_vectors_through_needs(comps, tmp_path):
    report = _run(comps["regression"], tmp_path, "lightgbm_embeddings", embed_above=2)
    assert set(report.recipes) == {"entity_embedding", "lightgbm_embeddings"}  # its need ran first
    plain = _run(comps["regression"], tmp_path / "plain", "lightgbm")
    for fold in ("fold0", "refit"):  # the refit reads the network's refit folder
        with_vectors = _done(report.run_dir, "lightgbm_embeddings", fold)["info"]["features"]
        assert with_vectors > _done(plain.run_dir, "lightgbm", fold)["info"]["features"]


@pytest.mark.parametrize("recipe", ["lightgbm", "entity_embedding"])
def test_binary_probabilities_beat_the_prior(comps, tmp_path, recipe):
    report = _run(comps["binary"], tmp_path, recipe)
    y = pd.read_csv(comps["binary"] / "train.csv")["Open"].to_numpy()
    prior = log_loss(y, np.full(len(y), y.mean()))
    assert _oof(report, recipe) < 0.5 * prior, (report.recipes, prior)  # Sundays and holidays: closed
    sub = pd.read_csv(report.submission)
    assert sub["Open"].between(0, 1).all() and sub["Open"].nunique() > 2  # probabilities, not labels


@pytest.mark.parametrize("recipe", ["lightgbm", "entity_embedding"])
def test_multiclass_probabilities_beat_the_class_frequencies(comps, tmp_path, recipe):
    report = _run(comps["multiclass"], tmp_path, recipe)
    labels = pd.read_csv(comps["multiclass"] / "train.csv", dtype={"StateHoliday": str})["StateHoliday"]
    classes = sorted(labels.unique())
    y = labels.map({c: i for i, c in enumerate(classes)}).to_numpy()
    prior = log_loss(y, np.tile(np.bincount(y) / len(y), (len(y), 1)))
    assert _oof(report, recipe) < prior, (report.recipes, prior)
    sub = pd.read_csv(report.submission)
    assert list(sub.columns) == ["Id", *classes]
    np.testing.assert_allclose(sub[classes].sum(axis=1), 1.0, atol=1e-4)


def test_options_are_typed_and_checked_before_training(comps, tmp_path):
    with pytest.raises(OptionError, match="rounds"):
        _run(comps["regression"], tmp_path, "lightgbm", rounds="many")
    with pytest.raises(OptionError, match="epochs"):
        _run(comps["regression"], tmp_path, "entity_embedding", epochs=2.5)
    with pytest.raises(OptionError, match="categorical='bogus': expected one of 'codes', 'native'"):
        _run(comps["regression"], tmp_path, "lightgbm", categorical="bogus")
    with pytest.raises(OptionError, match="trend='Store': .*write it GROUP@TIME_COLUMN"):
        _run(comps["regression"], tmp_path, "lightgbm", trend="Store")
    with pytest.raises(InputError, match="group_stats.*NoSuchColumn"):
        _run(comps["regression"], tmp_path, "lightgbm", group_stats="Store+NoSuchColumn")
    assert not list((tmp_path / "run").glob("*/*/fold0"))  # nothing trained


def _scramble_fold(folder: Path, valid_idx: np.ndarray, dest: Path) -> Path:
    """A copy of the competition whose fold's validation rows have their Sales shuffled among themselves."""
    dest.mkdir()
    for f in folder.iterdir():
        (dest / f.name).write_bytes(f.read_bytes())
    train = pd.read_csv(folder / "train.csv")
    values = train.loc[valid_idx, "Sales"].to_numpy()
    train.loc[valid_idx, "Sales"] = np.random.default_rng(0).permutation(values)
    train.to_csv(dest / "train.csv", index=False)
    return dest


@pytest.mark.parametrize("stop_on", ["valid", "inner"])
def test_lightgbm_stop_on_inner_chooses_nothing_on_the_scored_rows(comps, tmp_path, stop_on):
    first = _run(comps["regression"], tmp_path / "a", "lightgbm", stop_on=stop_on)
    (fold0,) = (first.run_dir / "lightgbm").glob("*/fold0")
    valid_idx = np.load(fold0 / "valid_idx.npy")
    other = _scramble_fold(comps["regression"], valid_idx, tmp_path / "scrambled")
    second = _run(other, tmp_path / "b", "lightgbm", stop_on=stop_on)
    (again,) = (second.run_dir / "lightgbm").glob("*/fold0")
    a, b = _done(first.run_dir, "lightgbm", "fold0"), _done(second.run_dir, "lightgbm", "fold0")
    if stop_on == "inner":  # the fold's predictions never saw its validation targets: identical
        assert a["info"]["rounds_from"] == "early stopping on inner training rows"
        assert a["info"]["rounds"] == b["info"]["rounds"]
        np.testing.assert_array_equal(np.load(fold0 / "oof.npy"), np.load(again / "oof.npy"))
    else:  # early stopping on the validation rows: their targets chose the rounds
        assert a["info"]["rounds"] != b["info"]["rounds"]


def test_lightgbm_inner_rows_are_the_last_values_of_inner_by():
    from kitbox.adapt.contract import CompetitionData, FoldContext
    from kitbox.recipes.tabular import LightGBMOptions, _inner_split

    days = pd.DataFrame({"Date": pd.date_range("2015-01-01", periods=20).repeat(3)})  # 3 rows a day
    data = CompetitionData(train=days, test=days.iloc[:0], sample_submission=days.iloc[:0], data_dir=Path("."))
    valid = np.arange(51, 60)  # the last 3 days
    ctx = FoldContext(0, np.arange(51), valid, data, np.zeros(60), Path("."), Path("."),
                      options=LightGBMOptions(stop_on="inner", inner_by="Date"))
    fit, stop = _inner_split(ctx)
    assert list(stop) == list(range(42, 51)) and list(fit) == list(range(42))  # the 3 training days before them
    with pytest.raises(InputError, match="stop_on=valid"):  # 2 training days cannot give 3 to stop on
        _inner_split(replace(ctx, train_idx=np.arange(6)))


def test_lightgbm_permutation_importance_names_what_the_sales_depend_on(comps, tmp_path):
    report = _run(comps["regression"], tmp_path, "lightgbm")
    importance = _done(report.run_dir, "lightgbm", "fold0")["info"]["importance"]
    # six stores of very different size: which store it is moves the sales most; then whether a promo runs
    assert list(importance)[0] == "Store" and importance["Store"] > 0.1
    assert importance["Promo"] > 0 and list(importance.values()) == sorted(importance.values(), reverse=True)
    assert "importance" not in _done(report.run_dir, "lightgbm", "refit")["info"]  # no rows to shuffle there
    (note,) = [n for n in report.notes if "permutation importance" in n]
    assert note.startswith("lightgbm: permutation importance") and "Store +" in note
