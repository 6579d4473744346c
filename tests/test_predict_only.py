"""Inference only, as in a Kaggle code competition: a finished run's saved models predict a swapped-in test set
(``--predict-only``) without training, and a rerun whose test files changed keeps its finished folds.
Data: six stores of the embedded Rossmann sample (real rows), the last four weeks as test."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import kitbox
from helpers.sk_competition import SkDigits, logreg_recipe
from kitbox.cli import main
from kitbox.errors import InputError
from test_tabular_recipes import FAST_GBM, REGRESSION, _sample_rows, _split_by_date, _write

RECIPES = "lightgbm,entity_embedding,lightgbm_embeddings"


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A finished run of every saving tabular recipe (2 folds and the refits) and its data folder."""
    root = tmp_path_factory.mktemp("predict")
    rows = _sample_rows()
    sales = rows[(rows["Open"] == 1) & (rows["Sales"] > 0)]
    inputs = ["Store", "DayOfWeek", "Promo", "StateHoliday", "SchoolHoliday", "Day"]
    folder = _write(root / "data", *_split_by_date(sales, inputs, "Sales"), ["Sales"], REGRESSION)
    report = _run(folder, root / "run", root / "submission.csv")
    return folder, report


def _run(folder: Path, run_dir: Path, out: Path, log=lambda *_: None, **settings):
    return kitbox.run(str(folder / "my_comp.py"), folder, recipes=RECIPES, options=dict(FAST_GBM, embed_above=2),
                      run_dir=run_dir, out=out, progress=False, seed=0, log=log, **settings)


def _hidden_test(folder: Path, dest: Path) -> Path:
    """The competition with another test set: the same stores' days with every promotion switched, fewer rows, new
    ids (train.csv is the same file: copied with its time stamp)."""
    shutil.copytree(folder, dest)
    test = pd.read_csv(folder / "test.csv").iloc[::2].reset_index(drop=True)
    test["Promo"] = 1 - test["Promo"]
    test["Id"] = np.arange(1000, 1000 + len(test))
    test.to_csv(dest / "test.csv", index=False)
    pd.DataFrame({"Id": test["Id"], "Sales": 0}).to_csv(dest / "sample_submission.csv", index=False)
    return dest


def _fold_records(run_dir: Path) -> dict[str, float]:
    return {str(p.relative_to(run_dir)): json.loads(p.read_text())["seconds"] for p in run_dir.glob("*/*/*/done.json")}


def test_predict_only_remakes_the_runs_submission_from_its_saved_models(trained, tmp_path):
    folder, report = trained
    saved = sorted(p.parent.name for p in report.run_dir.glob("*/*/*/predictor.pt"))
    assert saved == sorted(["fold0", "fold1", "refit"] * 3)  # every fold of the three recipes saved its model
    again = kitbox.run(str(folder / "my_comp.py"), folder, predict_only=True, models=report.run_dir,
                       out=tmp_path / "again.csv", log=lambda *_: None)
    assert again.submission.read_bytes() == report.submission.read_bytes()
    assert again.blend["score_honest"] == report.blend["score_honest"]  # the training run's CV, reported as such
    assert any("predict-only: no training" in n for n in again.notes)


def test_a_swapped_test_set_is_predicted_without_training(trained, tmp_path):
    folder, report = trained
    hidden = _hidden_test(folder, tmp_path / "hidden")
    before = _fold_records(report.run_dir)
    out = tmp_path / "hidden.csv"
    assert main([str(hidden / "my_comp.py"), "--data", str(hidden), "--predict-only", "--models",
                 str(report.run_dir), "--out", str(out)]) == 0
    assert _fold_records(report.run_dir) == before  # no fold trained or changed
    sub, test = pd.read_csv(out), pd.read_csv(hidden / "test.csv")
    assert sub["Id"].tolist() == test["Id"].tolist() and (sub["Sales"] > 0).all()
    # the switched promotions move the predictions: the models read the new rows, not the old test
    old = pd.read_csv(report.submission).iloc[::2]["Sales"].to_numpy()
    promo = test["Promo"].to_numpy() == 1
    assert (sub["Sales"].to_numpy()[promo] > old[promo]).mean() > 0.8
    assert (sub["Sales"].to_numpy()[~promo] < old[~promo]).mean() > 0.8


def test_a_rerun_with_new_test_files_keeps_its_folds_and_predicts_them_with_the_saved_models(trained, tmp_path):
    folder, report = trained
    run_dir = tmp_path / "run"
    shutil.copytree(report.run_dir, run_dir)
    hidden = _hidden_test(folder, tmp_path / "hidden")
    predicted = kitbox.run(str(hidden / "my_comp.py"), hidden, predict_only=True, models=run_dir,
                           out=tmp_path / "predicted.csv", log=lambda *_: None)
    lines = []
    rerun = _run(hidden, run_dir, tmp_path / "rerun.csv", log=lines.append)
    assert {p.parent.name for p in run_dir.glob("*/*")} == {p.parent.name for p in report.run_dir.glob("*/*")}
    assert sorted(p.name for p in (run_dir / "lightgbm").iterdir()) == \
        sorted(p.name for p in (report.run_dir / "lightgbm").iterdir())  # the same configuration folder
    assert sum("its saved model predicted them" in line for line in lines) == 9
    assert not any("trains again" in line for line in lines)
    assert rerun.submission.read_bytes() == predicted.submission.read_bytes()
    assert {n: r["oof"] for n, r in rerun.recipes.items()} == {n: r["oof"] for n, r in report.recipes.items()}


class _RunsAShell:
    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        import os

        return os.system, (f"touch {self.marker}",)


def test_a_saved_model_file_that_would_run_code_is_refused_before_it_runs(trained, tmp_path):
    import torch

    folder, report = trained
    run_dir = tmp_path / "run"
    shutil.copytree(report.run_dir, run_dir)
    marker = tmp_path / "it-ran"
    (saved,) = run_dir.glob("lightgbm/*/refit/predictor.pt")
    torch.save(_RunsAShell(marker), saved)  # a run folder downloaded from someone else, one file replaced
    with pytest.raises(InputError, match=r"predictor.pt: refusing posix.system"):
        kitbox.run(str(folder / "my_comp.py"), folder, predict_only=True, models=run_dir, out=tmp_path / "x.csv")
    assert not marker.exists()


def test_a_changed_training_file_trains_new_folds(trained, tmp_path):
    folder, report = trained
    changed = tmp_path / "changed"
    shutil.copytree(folder, changed)
    train = pd.read_csv(changed / "train.csv")
    train.iloc[:-5].to_csv(changed / "train.csv", index=False)
    prepared = kitbox.prepare(str(changed / "my_comp.py"), changed, recipes="lightgbm", options=FAST_GBM,
                              run_dir=report.run_dir, seed=0, log=lambda *_: None)
    assert not prepared.recipes["lightgbm"].config_dir.exists()


def test_a_recipe_that_saves_no_model_retrains_on_new_test_files_and_predict_only_names_it(tmp_path):
    comp = SkDigits({"logreg": logreg_recipe})
    data = tmp_path / "data"
    comp.load(data)
    first = kitbox.run(comp, data=data, run_dir=tmp_path / "runs", out=tmp_path / "a.csv", progress=False,
                       log=lambda *_: None)
    with pytest.raises(InputError, match=r"no saved model \(predictor.pt\) for logreg: fold0, fold1, fold2"):
        kitbox.run(comp, data=data, predict_only=True, models=first.run_dir, out=tmp_path / "b.csv")
    sample = pd.read_csv(data / "sample_submission.csv")
    sample.assign(Label=1).to_csv(data / "sample_submission.csv", index=False)  # the test files changed
    lines = []
    kitbox.run(comp, data=data, run_dir=tmp_path / "runs", out=tmp_path / "c.csv", progress=False,
               log=lines.append)
    assert sum("saved no model; it trains again" in line for line in lines) == 5  # its test may be stale: retrained


def test_tfidf_saves_its_vectorizers_and_head_and_predicts_new_tweets(tmp_path):
    from kitbox.pipeline import cv

    lines = []
    report = kitbox.run("disaster-tweets", recipes="tfidf", run_dir=tmp_path / "run", out=tmp_path / "a.csv",
                        progress=False, log=lines.append)
    data = kitbox.prepare("disaster-tweets", recipes="tfidf", run_dir=tmp_path / "run", log=lambda *_: None).data
    (config_dir,) = (tmp_path / "run" / "tfidf").glob("*/")
    for fold in range(5):  # each saved model gives its fold's test prediction again, from the raw tweets
        saved = cv.load_predictor(config_dir, fold).predict(data)
        np.testing.assert_allclose(saved, np.load(config_dir / f"fold{fold}" / "test.npy"), rtol=1e-5, atol=1e-7)
    again = kitbox.run("disaster-tweets", predict_only=True, models=tmp_path / "run", out=tmp_path / "b.csv",
                       log=lambda *_: None)
    assert again.submission.read_bytes() == report.submission.read_bytes()
    hidden = tmp_path / "hidden"  # the hidden test set: other tweets (the sample's training tweets, unlabelled)
    hidden.mkdir()
    train = pd.read_csv(data.data_dir / "train.csv.gz")
    train.head(300).drop(columns="target").to_csv(hidden / "test.csv", index=False)
    train.head(300)[["id"]].assign(target=0).to_csv(hidden / "sample_submission.csv", index=False)
    train.to_csv(hidden / "train.csv", index=False)
    out = kitbox.run("disaster-tweets", data=hidden, predict_only=True, models=tmp_path / "run",
                     out=tmp_path / "c.csv", log=lambda *_: None).submission
    sub = pd.read_csv(out)
    assert sub["id"].tolist() == train["id"].head(300).tolist()
    assert (sub["target"] == train["target"].head(300)).mean() > 0.8  # the models' own training tweets, mostly right


@pytest.mark.parametrize("recipe", ["sentence_vectors", "transformer", "ulmfit"])
def test_the_pretrained_text_recipes_save_models_that_predict_their_folds_test_again(tmp_path, recipe):
    from kitbox.pipeline import cv

    settings = dict(recipes=recipe, run_dir=tmp_path / "run", n_folds=2, quick=True)
    report = kitbox.run("disaster-tweets", out=tmp_path / "a.csv", progress=False, log=lambda *_: None, **settings)
    data = kitbox.prepare("disaster-tweets", log=lambda *_: None, **settings).data
    (config_dir,) = (tmp_path / "run" / recipe).glob("*/")
    for fold in range(2):
        saved = cv.load_predictor(config_dir, fold).predict(data)
        np.testing.assert_allclose(saved, np.load(config_dir / f"fold{fold}" / "test.npy"), rtol=1e-4, atol=1e-6)
    again = kitbox.run("disaster-tweets", predict_only=True, models=tmp_path / "run", out=tmp_path / "b.csv",
                       log=lambda *_: None)
    assert again.submission.read_bytes() == report.submission.read_bytes()


def _saved_models_predict_test_again(comp: str, recipe: str, tmp_path: Path, **settings) -> None:
    """Every fold's saved model, loaded from disk, gives that fold's test prediction; --predict-only with them
    writes the run's submission byte for byte."""
    from kitbox.pipeline import cv

    settings = dict(recipes=recipe, run_dir=tmp_path / "run", n_folds=2, quick=True, **settings)
    report = kitbox.run(comp, out=tmp_path / "a.csv", progress=False, log=lambda *_: None, **settings)
    data = kitbox.prepare(comp, log=lambda *_: None, **settings).data
    (config_dir,) = [d for d in (tmp_path / "run").glob("*/*/") if d.parent.name.startswith(recipe)]
    for fold in range(2):
        saved = cv.load_predictor(config_dir, fold).predict(data)
        np.testing.assert_allclose(saved, np.load(config_dir / f"fold{fold}" / "test.npy"), rtol=1e-4, atol=1e-6)
    weights = {"weights": settings["weights"]} if "weights" in settings else {}
    again = kitbox.run(comp, data=settings.get("data"), predict_only=True, models=tmp_path / "run",
                       out=tmp_path / "b.csv", log=lambda *_: None, **weights)
    assert again.submission.read_bytes() == report.submission.read_bytes()


@pytest.mark.parametrize("recipe", ["linear_probe", "cnn"])
def test_the_image_recipes_save_models_that_predict_their_folds_test_again(tmp_path, recipe):
    from helpers.paths import shared_path

    weights = shared_path("weights", "efficientnet_lite0.in1k.safetensors")
    _saved_models_predict_test_again("dogs-vs-cats", recipe, tmp_path, weights=str(weights), options={"size": 96})


def test_a_fine_tuned_cnn_saves_its_network_tta_and_calibration(tmp_path):
    from helpers.paths import shared_path

    weights = shared_path("weights", "efficientnet_lite0.in1k.safetensors")
    _saved_models_predict_test_again("dogs-vs-cats", "cnn", tmp_path, weights=str(weights),
                                     options={"size": 64, "ft_sizes": "64", "tta": 1})


def test_small_cnn_saves_its_network_and_tta(tmp_path):
    _saved_models_predict_test_again("digits", "small_cnn", tmp_path)


def test_the_unet_saves_its_network(tmp_path):
    from helpers.paths import REPO

    data = tmp_path / "nuclei"
    shutil.copytree(REPO / "competitions" / "samples" / "nuclei-tiles", data,
                    ignore=shutil.ignore_patterns("*.py", "solution.csv"))
    (data / "my_seg.py").write_text("import kitbox\n\n\nclass Nuclei(kitbox.SegmentationCompetition):\n"
                                    "    slug = 'nuclei-tiles'\n")
    _saved_models_predict_test_again(str(data / "my_seg.py"), "unet", tmp_path, data=str(data), from_scratch=True)


def test_predict_only_refuses_training_settings_and_a_folder_without_a_run(trained, tmp_path):
    folder, report = trained
    with pytest.raises(InputError, match="--predict-only trains nothing: leave out --folds, --time-limit"):
        kitbox.run(str(folder / "my_comp.py"), folder, predict_only=True, models=report.run_dir, folds="0,",
                   time_limit=3)
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="no submission.json or blend.pt there"):
        kitbox.run(str(folder / "my_comp.py"), folder, predict_only=True, models=tmp_path / "empty")
    with pytest.raises(InputError, match="no such folder"):
        kitbox.run(str(folder / "my_comp.py"), folder, predict_only=True, models=tmp_path / "nowhere")
