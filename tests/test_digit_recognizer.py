"""The Digit Recognizer card on its embedded sample: what it loads, its submission, bad input, a short run (and
the shared full data when present)."""
import shutil

import numpy as np
import pandas as pd
import pytest

import kitbox
from competitions.digit_recognizer import DigitRecognizer
from helpers.paths import shared_path
from kitbox.errors import InputError
from kitbox.adapt.options import OptionError


@pytest.fixture(scope="module")
def comp():
    return DigitRecognizer()


@pytest.fixture(scope="module")
def sample(comp):
    return comp.load(comp.sample_dir)


def test_sample_loads_as_ten_classes_of_28x28_pixels(comp, sample):
    assert sample.is_sample and comp.metric.name == "accuracy" and sample.task == "multiclass"
    assert sample.classes == list(range(10)) and list(comp.recipes()) == ["small_cnn", "small_cnn_wide"]
    assert sample.train_images.pixels.shape == (len(sample.train), 28, 28)
    assert sample.test_images.pixels.shape == (len(sample.test), 28, 28)
    np.testing.assert_array_equal(comp.targets(sample), sample.train["label"].to_numpy())


def test_submission_is_the_argmax_in_image_id_order(comp, sample):
    digits = np.arange(len(sample.test)) % 10
    sub = comp.submission(sample, comp.apply(np.eye(10)[digits], {}))
    assert list(sub.columns) == ["ImageId", "Label"]
    assert sub["ImageId"].astype(int).tolist() == list(range(1, len(sample.test) + 1))  # the test row's number
    assert sub["Label"].tolist() == digits.tolist()


def test_a_missing_pixel_column_fails_at_load_naming_it(comp, tmp_path):
    train = pd.read_csv(comp.sample_dir / "train.csv.gz")
    train.drop(columns=["pixel400"]).to_csv(tmp_path / "train.csv", index=False)
    for name in ("test.csv.gz", "sample_submission.csv"):
        shutil.copy(comp.sample_dir / name, tmp_path / name)
    with pytest.raises(InputError) as err:
        comp.load(tmp_path)
    assert "pixel400" in str(err.value) and "train.csv" in str(err.value) and "\n" not in str(err.value)


def test_a_short_run_learns_digits_and_writes_a_checked_submission(tmp_path):
    report = kitbox.run("digits", None, n_folds=2, options={"epochs": 6, "tta": 1}, run_dir=tmp_path / "run",
                        out=tmp_path / "sub.csv", progress=False, log=lambda *a: None)
    assert report.is_sample and report.recipes["small_cnn"]["oof"] > 0.6  # 6 epochs on 250 digits; chance is 0.1
    sub = pd.read_csv(report.submission)
    assert len(sub) == 100 and sub["Label"].between(0, 9).all()


def test_full_data_loads(comp):
    data = comp.load(shared_path("data", "digit-recognizer"))
    assert not data.is_sample and len(data.train) == 8000 and len(data.test) == len(data.sample_submission)
    assert set(comp.targets(data)) == set(range(10))


def test_digits_held_on_the_device_learn_as_well_as_through_the_dataloader(tmp_path):
    """device_loader=on (the default on a GPU: pixels on the device, affine augmentation per batch there) trains the
    same recipe to the same level as albumentations through a DataLoader (the CPU default); a bad value is refused."""
    scores = {}
    for mode in ("off", "on"):
        report = kitbox.run("digits", None, n_folds=2, recipes="small_cnn",
                            options={"epochs": 6, "tta": 1, "device_loader": mode}, run_dir=tmp_path / mode,
                            out=tmp_path / f"{mode}.csv", progress=False, log=lambda *a: None)
        scores[mode] = report.recipes["small_cnn"]["oof"]
    assert scores["on"] > 0.6 and abs(scores["on"] - scores["off"]) < 0.08, scores
    with pytest.raises(OptionError, match="small_cnn.device_loader='gpu': expected one of 'auto', 'on', 'off'"):
        kitbox.run("digits", None, n_folds=2, recipes="small_cnn", options={"epochs": 1, "device_loader": "gpu"},
                   run_dir=tmp_path / "bad", out=tmp_path / "bad.csv", progress=False, log=lambda *a: None)
