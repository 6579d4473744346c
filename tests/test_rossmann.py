"""The Rossmann adapter on its embedded sample (and on the full Kaggle data when ../shared has it): features, the
time holdout, bad input, recipes end to end, the submission, and the starter notebook."""
from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from competitions.rossmann import Rossmann, entity_embedding, lightgbm, lightgbm_embeddings
from kitbox.competition import FoldContext

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared" / "data"
FULL = SHARED / "rossmann-store-sales"


@pytest.fixture(scope="module")
def comp():
    return Rossmann()


@pytest.fixture(scope="module")
def data(comp):
    return comp.load(comp.sample_dir)


def test_sample_loads_as_a_mini_competition(comp, data):
    assert data.is_sample and data.extra["has_external"]
    assert len(data.test) == len(data.sample_submission)
    assert set(data.test["Id"]) == set(data.sample_submission["Id"])
    assert (data.train["Sales"] > 0).all() and (data.train["Open"] == 1).all()  # closed / zero days dropped
    assert data.train["Store"].nunique() >= 20
    # the external tables joined: weather and trend for (nearly) every row
    assert data.train["Mean_TemperatureC"].notna().mean() > 0.99 and data.train["trend"].notna().mean() > 0.99
    for name in data.extra["cat_names"] + data.extra["cont_names"]:
        assert name in data.test.columns, name


def test_event_features_are_consistent(data):
    df = data.train
    assert (df.loc[df["Promo"] == 1, "AfterPromo"] == 0).all()
    assert (df.loc[df["Promo"] == 0, "AfterPromo"] > 0).all()
    assert df["Promo_bw"].between(0, 7).all() and df["Promo_fw"].between(0, 7).all()
    # a promo day counts itself in both windows
    assert (df.loc[df["Promo"] == 1, "Promo_bw"] >= 1).all()
    # test rows see train's history: the first test day's distance to the last promo is not "unknown"
    first = data.test[data.test["Date"] == data.test["Date"].min()]
    assert (first["AfterPromo"] < 60).all()


def test_time_holdout_is_the_last_weeks_as_long_as_the_test_period(comp, data):
    folds = comp.split(data, 1, seed=0)
    assert set(np.unique(folds)) == {-1, 0}
    dates = data.train["Date"]
    test_weeks = ((data.test["Date"].max() - data.test["Date"].min()).days + 1) // 7
    assert dates[folds == 0].min() == dates.max() - pd.Timedelta(days=7 * test_weeks - 1)
    assert dates[folds == -1].max() < dates[folds == 0].min()


def test_kfold_options(comp, data):
    time_folds = comp.split(data, 4, seed=0)
    starts = [data.train["Date"][time_folds == k].min() for k in range(4)]
    assert starts == sorted(starts)  # contiguous periods in order
    store_comp = Rossmann()
    store_comp.validation = "store"
    store_folds = store_comp.split(data, 3, seed=0)
    assert (pd.Series(store_folds).groupby(data.train["Store"].to_numpy()).nunique() == 1).all()
    assert set(store_folds) == {0, 1, 2}


def test_submission_zero_for_closed_and_in_sample_order(comp, data):
    pred = np.full(len(data.test), 5000.0)
    sub = comp.submission(data, pred)
    assert sub["Id"].tolist() == data.sample_submission["Id"].tolist()
    closed = data.test.set_index("Id").loc[sub["Id"], "Open"].to_numpy() == 0
    assert closed.any()
    assert (sub["Sales"][closed] == 0).all() and (sub["Sales"][~closed] == 5000).all()


def _copy_sample(comp, tmp_path) -> Path:
    folder = tmp_path / "rossmann-store-sales"
    shutil.copytree(comp.sample_dir, folder)
    return folder


def _rewrite(folder: Path, name: str, change) -> None:
    path = folder / f"{name}.gz"
    df = pd.read_csv(path, dtype={"StateHoliday": str})
    change(df)
    df.to_csv(path, index=False)


def test_missing_file_names_the_file_and_the_folder(comp, tmp_path):
    folder = _copy_sample(comp, tmp_path)
    (folder / "store.csv.gz").unlink()
    with pytest.raises(FileNotFoundError, match=r"store\.csv.*" + str(folder).replace("\\", "\\\\")):
        comp.load(folder)


def test_missing_column_is_named(comp, tmp_path):
    folder = _copy_sample(comp, tmp_path)
    _rewrite(folder, "train.csv", lambda df: df.pop("Promo"))
    with pytest.raises(ValueError, match="Promo"):
        comp.load(folder)


def _set(column, row, value):
    def change(df):
        df[column] = df[column].astype(object)
        df.loc[row, column] = value
    return change


@pytest.mark.parametrize("name,change,message", [
    ("train.csv", _set("Sales", 3, -5), "negative Sales"),
    ("train.csv", _set("Date", 7, "31/07/2015"), "31/07/2015"),
    ("test.csv", _set("Store", 0, 99999), "99999"),
])
def test_bad_values_get_clear_errors(comp, tmp_path, name, change, message):
    folder = _copy_sample(comp, tmp_path)
    _rewrite(folder, name, change)
    with pytest.raises(ValueError, match=message):
        comp.load(folder)


def test_works_without_the_external_tables(comp, tmp_path):
    folder = _copy_sample(comp, tmp_path)
    for name in ("weather", "googletrend", "store_states", "state_names"):
        (folder / f"{name}.csv.gz").unlink()
    data = comp.load(folder)
    assert not data.extra["has_external"]
    assert "State" not in data.extra["cat_names"] and "trend" not in data.extra["cont_names"]


def test_recipes_end_to_end_on_the_sample(comp, data, tmp_path):
    folds = comp.split(data, 1, seed=0)
    y = comp.targets(data)
    valid_idx, train_idx = np.flatnonzero(folds == 0), np.flatnonzero(folds != 0)
    options = {"epochs": 2, "progress": False, "gbm_rounds": 150, "lr": 3e-3}
    scores = {}
    for name, recipe in (("entity_embedding", entity_embedding), ("lightgbm", lightgbm),
                         ("lightgbm_embeddings", lightgbm_embeddings)):
        ctx = FoldContext(0, train_idx, valid_idx, data, tmp_path / name / "fold0", seed=0, options=options)
        result = recipe(ctx)
        assert result.oof.shape == (len(valid_idx),) and result.test.shape == (len(data.test),)
        assert np.isfinite(result.oof).all() and (result.oof > 0).all()
        assert (result.test[data.test["Open"].to_numpy() == 0] == 0).all()
        scores[name] = comp.score(y[valid_idx], result.oof)
    # predicting each store's mean sales scores about 0.2-0.3 RMSPE; every recipe must beat a coarse bound
    assert scores["lightgbm"] < 0.2 and scores["lightgbm_embeddings"] < 0.2 and scores["entity_embedding"] < 0.35, scores
    fold_dir = tmp_path / "entity_embedding" / "fold0"
    for name in ("processor.json", "model.safetensors", "embeddings.json", "lr_find.png", "history.json"):
        assert (fold_dir / name).exists(), name


def test_refit_scores_the_holdout_model_and_predicts_test_with_one_trained_on_every_row(comp, data, tmp_path):
    folds = comp.split(data, 1, seed=0)
    valid_idx, train_idx = np.flatnonzero(folds == 0), np.flatnonzero(folds != 0)
    options = {"epochs": 1, "progress": False, "lr": 3e-3}
    results = {}
    for refit in (False, True):  # True: the default, no option given
        ctx = FoldContext(0, train_idx, valid_idx, data, tmp_path / f"refit_{refit}" / "fold0", seed=0,
                          options=options if refit else {**options, "refit": False})
        results[refit] = entity_embedding(ctx)
    plain, refit = results[False], results[True]
    assert np.allclose(plain.oof, refit.oof)  # the OOF score is the holdout model's either way
    assert plain.info["test_model"] == "holdout" and refit.info["test_model"] == "refit on all train rows"
    refit_dir = tmp_path / "refit_True" / "fold0" / "refit"
    assert (refit_dir / "model.safetensors").exists() and (refit_dir / "processor.json").exists()
    open_rows = data.test["Open"].to_numpy() != 0
    assert np.isfinite(refit.test).all() and (refit.test[~open_rows] == 0).all()
    assert not np.allclose(plain.test[open_rows], refit.test[open_rows])  # test comes from the other model


@pytest.mark.skipif(not FULL.exists(), reason=f"full Rossmann data not found at {FULL}")
def test_full_data_holdout_dates(comp):
    data = comp.load(FULL)
    folds = comp.split(data, 1, seed=0)
    valid_dates = data.train["Date"][folds == 0]
    # issue 4: the last 6 weeks of train, as long as the test period, like fast.ai's notebook
    assert valid_dates.min() == pd.Timestamp("2015-06-20") and valid_dates.max() == pd.Timestamp("2015-07-31")
    assert len(data.test) == len(data.sample_submission)
    assert set(data.test["Store"]) <= set(data.train["Store"])
    assert data.test.loc[data.test["Id"].isin(data.sample_submission["Id"]), "Open"].notna().all()  # missing Open filled


def test_starter_notebook_runs_on_the_sample(tmp_path, monkeypatch):
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    # the kernel runs in an empty folder (so it finds no ./data and uses the sample) but imports this checkout
    monkeypatch.setenv("PYTHONPATH", str(REPO))
    monkeypatch.setenv("MPLBACKEND", "Agg")
    notebook = nbformat.read(REPO / "notebooks" / "rossmann.ipynb", as_version=4)
    client = nbclient.NotebookClient(notebook, timeout=600, kernel_name="python3",
                                     resources={"metadata": {"path": str(tmp_path)}})
    client.execute(cwd=str(tmp_path))
    outputs = "".join(o.get("text", "") for cell in notebook.cells for o in cell.get("outputs", []))
    assert "holdout RMSPE" in outputs
    assert (tmp_path / "submission.csv").exists()
    sub = pd.read_csv(tmp_path / "submission.csv")
    assert list(sub.columns) == ["Id", "Sales"] and sub["Sales"].notna().all()
