"""The Digit Recognizer adapter on its embedded sample (and the shared full data when present)."""
import numpy as np
import pytest

from conftest import shared_path
from competitions.digit_recognizer import DigitRecognizer
from kitbox.cv import run_fold


@pytest.fixture(scope="module")
def comp():
    return DigitRecognizer()


@pytest.fixture(scope="module")
def sample(comp):
    return comp.load(comp.sample_dir)


def test_sample_loads_and_submission_is_argmax_in_order(comp, sample):
    assert sample.is_sample and comp.metric.name == "accuracy"
    assert sample.train.shape[1] == 785 and sample.test.shape[1] == 784
    probs = np.eye(10)[np.arange(len(sample.test)) % 10]
    sub = comp.submission(sample, probs)
    assert list(sub.columns) == ["ImageId", "Label"]
    assert sub["ImageId"].tolist() == list(range(1, len(sample.test) + 1))
    assert sub["Label"].tolist() == (np.arange(len(sample.test)) % 10).tolist()
    with pytest.raises(ValueError, match="test predictions for"):
        comp.submission(sample, probs[:-1])


def test_recipe_learns_digits_on_the_sample(comp, sample, tmp_path):
    folds = comp.split(sample, 5, 42)
    rec = run_fold("small_cnn", comp.recipes()["small_cnn"], 0, folds, sample, comp.targets(sample), comp.metric,
                   tmp_path, options={"progress": False, "epochs": 8, "tta": 2, "widths": "16,32,64"})
    assert rec.oof.shape == (len(rec.valid_idx), 10) and np.allclose(rec.oof.sum(1), 1, atol=1e-4)
    assert rec.score >= 0.85, f"accuracy {rec.score:.3f} on 100 held-out digits after training on 400"
    assert {"accuracy_plain", "accuracy_tta", "data_share"} <= set(rec.info)
    assert (tmp_path / "small_cnn" / "fold0" / "model.safetensors").exists()


def test_full_data_loads(comp):
    data = comp.load(shared_path("data", "digit-recognizer"))
    assert not data.is_sample and len(data.test) == len(data.sample_submission)
    assert set(comp.targets(data)) == set(range(10))
