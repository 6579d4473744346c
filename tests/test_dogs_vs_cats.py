"""The Dogs vs Cats adapter on its embedded sample (and the shared full data when present)."""
import numpy as np
import pytest

from conftest import shared_path
from competitions.dogs_vs_cats import DogsVsCats
from kitbox.cv import run_fold
from kitbox.vision import models as vmodels

WEIGHTS = ("weights", "efficientnet_lite0.in1k.safetensors")


@pytest.fixture(scope="module")
def comp():
    return DogsVsCats()


@pytest.fixture(scope="module")
def sample(comp):
    return comp.load(comp.sample_dir)


def test_sample_loads_as_a_competition(comp, sample):
    assert sample.is_sample and comp.metric.name == "log_loss" and not comp.metric.greater_is_better
    names = sample.train["path"].str.rsplit("/", n=1).str[-1]
    assert (names.str.startswith("dog") == (sample.train["label"] == 1)).all()
    assert set(sample.test["id"]) == set(sample.sample_submission["id"])
    folds = comp.split(sample, 5, 42)
    for k in range(5):  # stratified: each fold holds about as many cats as dogs
        labels = sample.train["label"].to_numpy()[folds == k]
        assert abs(labels.mean() - 0.5) < 0.1


def test_submission_is_clipped_p_dog_in_sample_order(comp, sample):
    pred = np.linspace(0, 1, len(sample.test))
    sub = comp.submission(sample, pred)
    assert list(sub.columns) == ["id", "label"] and sub["id"].tolist() == sample.sample_submission["id"].tolist()
    by_id = dict(zip(sample.test["id"], pred))
    np.testing.assert_allclose(sub["label"], [by_id[i] for i in sub["id"]])
    partial = sample.test.iloc[1:]  # an unreadable test photo was skipped: it gets the prior, with a warning
    sample_short = type(sample)(sample.train, partial, sample.sample_submission, sample.data_dir)
    with pytest.warns(UserWarning, match="1 test ids have no prediction"):
        sub = comp.submission(sample_short, np.full(len(partial), 0.9))
    assert sub.loc[sub["id"] == sample.test["id"].iloc[0], "label"].item() == 0.5


def test_recipe_without_weights_explains_instead_of_downloading(comp, sample, tmp_path, monkeypatch):
    monkeypatch.delenv("KITBOX_WEIGHTS", raising=False)
    monkeypatch.delenv("KITBOX_FROM_SCRATCH", raising=False)
    monkeypatch.setattr(vmodels, "KAGGLE_INPUT", tmp_path / "no-kaggle")
    monkeypatch.setattr(vmodels, "_hub_cache_file", lambda name: None)
    folds = comp.split(sample, 5, 42)
    with pytest.raises(vmodels.WeightsNotFound, match="--weights PATH"):
        run_fold("pretrained_cnn", comp.recipes()["pretrained_cnn"], 0, folds, sample, comp.targets(sample),
                 comp.metric, tmp_path, options={"progress": False})


def test_recipe_with_pretrained_weights_on_the_sample(comp, sample, tmp_path):
    """Frozen features + head on 160 small real photos tell most of the 40 held-out ones apart; a short unfrozen
    phase at 96 px then runs through (its few batches are no test of accuracy); probabilities are clipped."""
    weights = shared_path(*WEIGHTS)
    folds = comp.split(sample, 5, 42)
    rec = run_fold("pretrained_cnn", comp.recipes()["pretrained_cnn"], 0, folds, sample, comp.targets(sample),
                   comp.metric, tmp_path, options={"weights": str(weights), "progress": False, "ft_sizes": "96",
                                                   "tta": 1})
    assert rec.info["head_accuracy_tta"] >= 0.85 and rec.info["head_log_loss_tta"] < 0.4
    assert rec.oof.min() >= 0.005 and rec.oof.max() <= 0.995 and rec.test.shape == (len(sample.test),)
    assert {"log_loss_plain", "log_loss_tta", "accuracy_tta", "data_share"} <= set(rec.info)
    assert rec.info["ft_sizes"] == [96] and (tmp_path / "pretrained_cnn" / "fold0" / "model.safetensors").exists()
    assert list((tmp_path / "cache").glob("features-plain128-*.pt"))  # the frozen phase's features were cached


def test_full_data_loads(comp):
    data = comp.load(shared_path("data", "dogs-vs-cats-redux-kernels-edition"))
    assert not data.is_sample and data.train["label"].nunique() == 2
    assert len(data.test) == len(data.sample_submission)
