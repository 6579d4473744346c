"""The generic image recipes (kitbox.recipes.vision) through ``kitbox.run``, on adapters a competitor would write:
a few lines in a file outside the repo, loaded by path, over layouts made from real images (class folders, a CSV
of ids and labels, a multi-label CSV of tags) and over pixel columns."""
from __future__ import annotations

import json
import shutil
import textwrap
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest

import kitbox
from helpers.paths import REPO, shared_path
from kitbox.adapt.contract import RunSettings
from kitbox.errors import InputError
from kitbox.metrics import log_loss
from kitbox.adapt.options import resolve_options
from kitbox.recipes.vision import CNNOptions, LinearProbeOptions, weights_preflight
from kitbox.vision.calibration import Calibration, calibration_loss, class_prior, fit_calibration
from kitbox.vision.multilabel import two_digit_images

DOGS = REPO / "competitions" / "samples" / "dogs-vs-cats-redux-kernels-edition"
DIGITS = REPO / "competitions" / "samples" / "digit-recognizer"
SMALL = {"size": 96}  # features and predictions at 96 px: seconds per fold on one core


def weights() -> Path:
    return shared_path("weights", "efficientnet_lite0.in1k.safetensors")


# ---------------------------------------------------------------------------------------------- layouts


def write_adapter(folder: Path, body: str) -> str:
    """An adapter file as a competitor writes it, outside the repo; ``kitbox.run`` loads it by path."""
    path = folder / "my_comp.py"
    path.write_text("import numpy as np\nfrom kitbox import ImageCompetition\n\n\n" + textwrap.dedent(body))
    return str(path)


def class_folders(root: Path, per_class: int = 20, n_test: int = 8) -> Path:
    """``train/cat/*.jpg``, ``train/dog/*.jpg``, ``test/*.jpg`` and ``id,label`` (P(dog)) from real photos."""
    for label in ("cat", "dog"):
        (root / "train" / label).mkdir(parents=True)
        for src in sorted(DOGS.glob(f"train/{label}.*.jpg"))[:per_class]:
            shutil.copy(src, root / "train" / label / src.name)
    (root / "test").mkdir()
    tests = sorted((DOGS / "test").glob("*.jpg"))[:n_test]
    for src in tests:
        shutil.copy(src, root / "test" / src.name)
    pd.DataFrame({"id": [p.stem for p in tests], "label": 0.5}).to_csv(root / "sample_submission.csv", index=False)
    return root


def digit_table(n: int) -> tuple[np.ndarray, np.ndarray]:
    train = pd.read_csv(DIGITS / "train.csv.gz").head(n)
    return train.filter(like="pixel").to_numpy(np.uint8).reshape(-1, 28, 28), train["label"].to_numpy()


def write_pngs(folder: Path, images: np.ndarray, ids: list[str]) -> None:
    folder.mkdir(parents=True)
    for image, name in zip(images, ids):
        cv2.imwrite(str(folder / f"{name}.png"), image)


def csv_layout(root: Path, n_train: int = 45, n_test: int = 9) -> Path:
    """Digits 0-2 as PNG files named by id, ``train.csv`` (id,label), ``test.csv`` (id) and a sample with one
    probability column per class (multi-class log loss)."""
    pixels, labels = digit_table(300)
    keep = np.flatnonzero(labels < 3)[:n_train + n_test]
    ids = [f"img{i:03d}" for i in range(len(keep))]
    write_pngs(root / "train", pixels[keep[:n_train]], ids[:n_train])
    write_pngs(root / "test", pixels[keep[n_train:]], ids[n_train:])
    pd.DataFrame({"id": ids[:n_train], "label": labels[keep[:n_train]]}).to_csv(root / "train.csv", index=False)
    pd.DataFrame({"id": ids[n_train:]}).to_csv(root / "test.csv", index=False)
    sample = pd.DataFrame({"id": ids[n_train:], **{str(c): 1 / 3 for c in range(3)}})
    sample.to_csv(root / "sample_submission.csv", index=False)
    return root


def multilabel_layout(root: Path, n_train: int = 48, n_test: int = 8) -> Path:
    """Two real digits side by side carry both labels: ``train.csv`` (image_name, space-separated tags)."""
    pixels, labels = digit_table(200)
    images, targets = two_digit_images(pixels, labels, n_train + n_test, seed=0)
    ids = [f"pair{i:03d}" for i in range(len(images))]
    tags = [" ".join(str(d) for d in np.flatnonzero(row)) for row in targets]
    write_pngs(root / "train", images[:n_train], ids[:n_train])
    write_pngs(root / "test", images[n_train:], ids[n_train:])
    pd.DataFrame({"image_name": ids[:n_train], "tags": tags[:n_train]}).to_csv(root / "train.csv", index=False)
    pd.DataFrame({"image_name": ids[n_train:]}).to_csv(root / "test.csv", index=False)
    pd.DataFrame({"image_name": ids[n_train:], "tags": "0 1"}).to_csv(root / "sample_submission.csv", index=False)
    return root


FOLDERS_ADAPTER = """
class Pets(ImageCompetition):
    slug = "pets"
    metric_name = "log_loss"
"""

CSV_ADAPTER = """
class Digits3(ImageCompetition):
    slug = "digits3"
    metric_name = "log_loss"
    image_suffix = ".png"
"""

MULTILABEL_ADAPTER = """
class DigitPairs(ImageCompetition):
    slug = "digit-pairs"
    metric_name = "f2_multilabel"
    image_suffix = ".png"

    def decide(self, oof, y):
        from kitbox.vision.multilabel import best_thresholds

        return {"thresholds": best_thresholds(y, oof).tolist()}

    def apply(self, pred, decided):
        return (np.asarray(pred) >= np.asarray(decided.get("thresholds", 0.5))).astype(np.int64)
"""

FILES_SMALL_CNN_ADAPTER = """
class PetsSmall(ImageCompetition):
    slug = "pets-small"
    metric_name = "log_loss"

    def recipes(self):
        from kitbox.recipes.vision import small_cnn

        return {"small_cnn": small_cnn}
"""

PIXELS_ADAPTER = """
class Pixels(ImageCompetition):
    slug = "pixels"
    metric_name = "accuracy"
    pixel_prefix = "pixel"
"""


def run(tmp_path: Path, adapter: str, data: Path, **kwargs):
    kwargs.setdefault("n_folds", 2)
    return kitbox.run(write_adapter(tmp_path, adapter), data, quick=True, run_dir=tmp_path / "run",
                      out=tmp_path / "submission.csv", progress=False, log=lambda *a: None, **kwargs)


def fold_info(report, name: str, fold: int = 0) -> dict:
    """What the recipe reported for one fold (``FoldPredictions.info``, kept in the fold's done.json)."""
    done = next((report.run_dir / name).glob(f"*/fold{fold}/done.json"))
    return json.loads(done.read_text())["info"]


# ---------------------------------------------------------------------------------------------- recipes on layouts


def test_linear_probe_and_cnn_on_class_folders(tmp_path):
    """Binary (P(dog)) from class folders: the probe learns, the CNN's head never does worse than the constant
    (on 20 training photos a fold its calibration may not trust it), both say where their weights came from, and
    the submission is the sample's ids with probabilities."""
    report = run(tmp_path, FOLDERS_ADAPTER, class_folders(tmp_path / "data"), weights=weights(), options=SMALL)
    assert set(report.recipes) == {"linear_probe", "cnn"} and report.complete
    assert report.recipes["linear_probe"]["oof"] < 0.6, report.recipes["linear_probe"]  # 0.693 is a coin toss
    assert report.recipes["cnn"]["oof"] <= np.log(2) + 1e-9, report.recipes["cnn"]
    for name in report.recipes:
        assert "efficientnet_lite0 weights: file" in fold_info(report, name)["weights"]
    sub = pd.read_csv(report.submission, dtype={"id": str})
    sample = pd.read_csv(tmp_path / "data" / "sample_submission.csv", dtype={"id": str})
    assert sub["id"].tolist() == sample["id"].tolist()
    assert sub["label"].between(0, 1).all() and sub["label"].std() > 0.05
    info = fold_info(report, "cnn")
    assert {"tta_beta", "temperature", "prior_share", "clip", "head_lr", "calibration_loss"} <= set(info)


def test_cnn_on_a_csv_of_ids_and_labels_multiclass(tmp_path):
    """Three digit classes as PNG files named in train.csv: one probability column per class, rows sum to 1."""
    report = run(tmp_path, CSV_ADAPTER, csv_layout(tmp_path / "data"), weights=weights(), options=SMALL,
                 recipes="cnn")
    assert report.recipes["cnn"]["oof"] < np.log(3) - 0.2, report.recipes["cnn"]
    sub = pd.read_csv(report.submission)
    assert list(sub.columns) == ["id", "0", "1", "2"]
    np.testing.assert_allclose(sub[["0", "1", "2"]].sum(axis=1), 1.0, atol=1e-6)


def test_multilabel_csv_of_tags(tmp_path):
    """Two-digit images tagged with both digits: per-label probabilities, thresholds decided on OOF by the
    adapter, tags written back space-separated."""
    report = run(tmp_path, MULTILABEL_ADAPTER, multilabel_layout(tmp_path / "data"), weights=weights(),
                 options={**SMALL, "cs": "0.05"})  # one C: no inner CV for each of the ten labels
    assert report.complete and set(report.recipes) == {"linear_probe", "cnn"}
    oof = np.load(next((tmp_path / "run" / "linear_probe").glob("*/fold0/oof.npy")))
    assert oof.shape[1] == 10 and ((oof >= 0) & (oof <= 1)).all()
    sub = pd.read_csv(report.submission, dtype=str, keep_default_na=False)
    assert all(set(tags.split()) <= set("0123456789") for tags in sub["tags"])
    assert report.blend["score_honest"] > 0.3  # F2 of always "0" (the sample) is about 0.1


def test_small_cnn_on_pixel_columns(tmp_path):
    """Any adapter with pixel columns gets small_cnn; with --quick a smoke test: class probabilities per row."""
    report = run(tmp_path, PIXELS_ADAPTER, DIGITS, options={"tta": 1})
    assert set(report.recipes) == {"small_cnn"} and report.complete
    oof = np.load(next((tmp_path / "run" / "small_cnn").glob("*/fold0/oof.npy")))
    assert oof.shape == (250, 10) and np.allclose(oof.sum(1), 1.0, atol=1e-5)


def test_from_scratch_names_the_recipe_and_never_loses_to_the_constant(tmp_path):
    """--from-scratch: the run calls the recipe cnn_from_scratch (issue 18), and its calibrated probabilities
    score no worse than predicting the training prior on the held-out rows."""
    report = run(tmp_path, FOLDERS_ADAPTER, class_folders(tmp_path / "data"), from_scratch=True, recipes="cnn",
                 options=SMALL)
    assert set(report.recipes) == {"cnn_from_scratch"}
    assert (tmp_path / "run" / "cnn_from_scratch").is_dir()
    assert "random (from scratch)" in fold_info(report, "cnn_from_scratch")["weights"]
    constant = log_loss(np.r_[np.zeros(20), np.ones(20)], np.full(40, 0.5))  # 20 cats, 20 dogs: log 2
    assert report.recipes["cnn_from_scratch"]["oof"] <= constant + 0.02


@pytest.mark.parametrize("recipe, adapter, layout, options", [
    ("cnn", FOLDERS_ADAPTER, class_folders, {**SMALL, "ft_sizes": "64"}),
    ("small_cnn", PIXELS_ADAPTER, None, {"tta": 1}),
])
def test_same_seed_twice_gives_byte_identical_oof(tmp_path, recipe, adapter, layout, options):
    """Augmentation, shuffling, dropout and calibration all follow the seed: two runs, one fold, same bytes."""
    data = layout(tmp_path / "data") if layout else DIGITS
    extra = {"weights": weights()} if recipe == "cnn" else {}
    oofs = []
    for attempt in ("a", "b"):
        kitbox.run(write_adapter(tmp_path, adapter), data, quick=True, run_dir=tmp_path / attempt, recipes=recipe,
                   folds=[0], n_folds=2, options=options, progress=False, log=lambda *a: None, **extra)
        oofs.append(next((tmp_path / attempt / recipe).glob("*/fold0/oof.npy")).read_bytes())
    assert oofs[0] == oofs[1]


# ---------------------------------------------------------------------------------------------- checks before training


def test_no_weights_stops_before_training_with_both_ways_to_get_them(tmp_path, monkeypatch):
    from kitbox.vision.models import find_weights

    monkeypatch.delenv("KITBOX_WEIGHTS", raising=False)
    if find_weights("efficientnet_lite0") is not None:
        pytest.skip("this machine has efficientnet_lite0 weights in /kaggle/input or timm's cache")
    with pytest.raises(InputError) as err:
        run(tmp_path, FOLDERS_ADAPTER, class_folders(tmp_path / "data"))
    message = str(err.value)
    for fix in ("--weights PATH", "KITBOX_WEIGHTS", "/kaggle/input", "efficientnet_lite0*.safetensors",
                "--download-weights", "--from-scratch"):
        assert fix in message
    assert not (tmp_path / "run").exists()  # nothing trained, no folder made
    weights_preflight(None, RunSettings(download_weights=True), CNNOptions())  # allowed to download: no error


def test_missing_weights_file_is_named(tmp_path):
    with pytest.raises(InputError, match="nowhere.safetensors"):
        weights_preflight(None, RunSettings(weights=str(tmp_path / "nowhere.safetensors")), LinearProbeOptions())


def test_small_cnn_on_image_files_is_refused_before_training(tmp_path):
    with pytest.raises(InputError, match="pixel_prefix"):
        run(tmp_path, FILES_SMALL_CNN_ADAPTER, class_folders(tmp_path / "data"))
    assert not (tmp_path / "run").exists()


# ---------------------------------------------------------------------------------------------- calibration


@pytest.mark.parametrize("kind", ["binary", "multiclass", "multilabel"])
def test_calibration_tames_an_overconfident_useless_model(kind):
    """Confident noise (a from-scratch CNN on too few photos) is pulled to the prior: on fresh rows it scores
    about the constant's log loss instead of several times worse."""
    rng = np.random.default_rng(0)
    shape = {"binary": (400,), "multiclass": (400, 4), "multilabel": (400, 3)}[kind]

    def rows():
        y = rng.integers(0, 4, 400) if kind == "multiclass" else (rng.random(shape) < 0.3).astype(float)
        p = rng.dirichlet(np.full(4, 0.05), 400) if kind == "multiclass" else rng.choice([0.01, 0.99], shape)
        return y, p


    (y_fit, p_fit), (y_new, p_new) = rows(), rows()
    prior = class_prior(kind, y_fit, 4)
    cal = fit_calibration(p_fit, None, y_fit, kind, prior)
    constant = calibration_loss(kind, y_new, np.broadcast_to(prior, p_new.shape))
    assert calibration_loss(kind, y_new, p_new) > 2 * constant
    assert calibration_loss(kind, y_new, cal.apply(p_new)) < constant + 0.02
    assert cal == Calibration(kind, prior, *[getattr(cal, f) for f in ("beta", "temperature", "shrink", "clip")])


def test_calibration_leaves_a_good_model_alone_and_picks_the_tta_weight():
    """Accurate, well-calibrated passes: no prior mixed in; the better pass gets the larger weight."""
    rng = np.random.default_rng(1)
    y = rng.integers(0, 2, 2000)
    logit = np.where(y == 1, 2.5, -2.5)
    plain = 1 / (1 + np.exp(-(logit + rng.normal(0, 1.0, 2000))))
    augmented = 1 / (1 + np.exp(-(logit + rng.normal(0, 3.0, 2000))))
    cal = fit_calibration(plain, augmented, y, "binary", np.array(y.mean()))
    assert cal.shrink == 0.0 and cal.beta >= 0.6


def test_calibration_submits_the_prior_when_the_model_cannot_show_it_does_better():
    """Four held-out rows, two right and two wrong: no evidence against the constant, so the prior is submitted."""
    y, p = np.array([1, 0, 1, 0]), np.array([0.9, 0.2, 0.3, 0.6])
    cal = fit_calibration(p, None, y, "binary", np.array(0.5))
    assert cal.shrink == 1.0
    np.testing.assert_allclose(cal.apply(np.array([0.01, 0.99])), 0.5)


def test_calibration_of_float32_certainties_stays_finite():
    """A network's float32 output of exactly 1.0 on a wrong row: every candidate's loss is finite, none is NaN."""
    y = np.array([0, 1, 1, 0, 1, 0] * 20)
    p = np.where(y == 1, 0.97, 0.02).astype(np.float32)
    p[0] = 1.0  # confidently wrong
    cal = fit_calibration(p, None, y, "binary", np.array(0.5))
    losses = cal.report(p, None, y)
    assert np.isfinite(losses["calibration_loss_plain"])
    assert losses["calibration_loss"] < losses["calibration_loss_plain"]


@pytest.mark.parametrize("device, sample, given, expected", [
    ("cuda", False, "auto", [112, 224]),  # a GPU trains every layer, growing to full size
    ("cuda", True, "auto", [64, 128]),
    ("cpu", False, "auto", []),  # a CPU keeps the head on cached features
    ("cpu", False, "96,160", [96, 160]),  # what the user sets wins on either device
    ("cuda", False, "", []),
])
def test_the_cnn_fine_tunes_every_layer_by_default_on_a_gpu_only(device, sample, given, expected):
    from types import SimpleNamespace

    from kitbox.recipes.vision import _ft_sizes

    from kitbox.recipes.vision import cnn

    options = resolve_options({"cnn": cnn}, {"ft_sizes": given})["cnn"]  # parsed as --set ft_sizes=... parses it
    ctx = SimpleNamespace(options=options, settings=RunSettings(device=device),
                          data=SimpleNamespace(is_sample=sample), quick=False)
    assert _ft_sizes(ctx) == expected


def test_the_cnn_loader_workers_follow_the_device_unless_set(monkeypatch):
    from kitbox.vision import data as vision_data

    assert CNNOptions().workers is None
    monkeypatch.setattr(vision_data, "_usable_cores", lambda: 4)  # Kaggle's GPU notebook
    assert vision_data.loader_settings("cuda", CNNOptions().workers)["num_workers"] == 3
    assert vision_data.loader_settings("cpu", CNNOptions().workers)["num_workers"] == 0
    assert vision_data.loader_settings("cuda", 1)["num_workers"] == 1
