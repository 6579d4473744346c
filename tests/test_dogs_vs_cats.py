"""The Dogs vs Cats card on its embedded sample: what it loads, its submission, unreadable and misplaced photos
(and the shared full data when present)."""
import shutil

import numpy as np
import pandas as pd
import pytest

import kitbox
from competitions.dogs_vs_cats import DogsVsCats
from helpers.paths import shared_path

WEIGHTS = ("weights", "efficientnet_lite0.in1k.safetensors")


@pytest.fixture(scope="module")
def comp():
    return DogsVsCats()


@pytest.fixture(scope="module")
def sample(comp):
    return comp.load(comp.sample_dir)


def test_sample_loads_as_p_dog_from_file_names(comp, sample):
    assert sample.is_sample and comp.metric.name == "log_loss" and sample.task == "binary"
    assert sample.classes == ["cat", "dog"]  # classes[1] is the submitted probability's class
    y = comp.targets(sample)
    np.testing.assert_array_equal(y, [p.name.startswith("dog.") for p in sample.train_images.paths])
    assert set(sample.test["id"]) == set(sample.sample_submission["id"])
    assert set(comp.recipes()) == {"linear_probe", "cnn"}
    folds = comp.split(sample, 5, 42)
    assert all(abs(y[folds == k].mean() - 0.5) < 0.1 for k in range(5))  # stratified


def test_submission_is_p_dog_in_the_sample_order(comp, sample):
    pred = np.linspace(0, 1, len(sample.test))
    sub = comp.submission(sample, comp.apply(pred, {}))
    assert list(sub.columns) == ["id", "label"] and sub["id"].tolist() == sample.sample_submission["id"].tolist()
    by_id = dict(zip(sample.test["id"], pred))
    np.testing.assert_allclose(sub["label"], [by_id[i] for i in sub["id"]])


def copy_sample(comp, folder, per_class: int = 24):
    (folder / "train").mkdir(parents=True)
    for label in ("cat", "dog"):
        for src in sorted((comp.sample_dir / "train").glob(f"{label}.*.jpg"))[:per_class]:
            shutil.copy(src, folder / "train" / src.name)
    shutil.copytree(comp.sample_dir / "test", folder / "test")
    shutil.copy(comp.sample_dir / "sample_submission.csv", folder / "sample_submission.csv")
    return folder


def test_an_unreadable_test_photo_gets_the_prior_and_is_named(comp, tmp_path):
    data = copy_sample(comp, tmp_path / "data")
    (data / "test" / "152.jpg").write_bytes(b"not a jpeg")
    report = kitbox.run(DogsVsCats(), data, recipes="linear_probe", n_folds=2, quick=True, options={"size": 64},
                        weights=shared_path(*WEIGHTS), run_dir=tmp_path / "run", out=tmp_path / "sub.csv",
                        progress=False, log=lambda *a: None)
    assert any("152.jpg" in note for note in report.notes), report.notes
    weights_file = str(shared_path(*WEIGHTS))  # the summary says where the pretrained weights came from
    assert any(n.startswith("linear_probe: pretrained weights from") and weights_file in n for n in report.notes)
    sub = pd.read_csv(report.submission, dtype={"id": str}).set_index("id")["label"]
    assert len(sub) == 50 and abs(sub["152"] - 0.5) < 0.2  # the prior, between the classes
    assert sub.drop("152").std() > 0.1  # the others are predictions


def test_a_wrong_image_folder_is_named(comp, tmp_path):
    data = copy_sample(comp, tmp_path / "data", per_class=2)
    shutil.copy(next((data / "train").glob("cat.*.jpg")), data / "train" / "kitten.jpg")
    with pytest.raises(ValueError, match="kitten.jpg"):
        comp.load(data)
    shutil.rmtree(data / "train")
    with pytest.raises(FileNotFoundError, match="train"):
        comp.load(data)


def test_full_data_loads(comp):
    data = comp.load(shared_path("data", "dogs-vs-cats-redux-kernels-edition"))
    assert not data.is_sample and len(data.train) == 1600 and comp.targets(data).mean() == 0.5
    assert len(data.test) == len(data.sample_submission) == 1001
