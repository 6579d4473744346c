"""kitbox.vision on real images: the embedded Dogs vs Cats and digit samples, and the shared ImageNet weights."""
import shutil
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from conftest import REPO, shared_path
from kitbox.learner import Learner
from kitbox.metrics import fbeta_multilabel
from kitbox.tasks import Task
from kitbox.vision import data as vdata
from kitbox.vision import models as vmodels
from kitbox.vision.features import cached_features
from kitbox.vision.multilabel import best_thresholds, two_digit_images
from kitbox.vision.speed import loader_vs_step
from kitbox.vision.transforms import (Norm, digit_train_tfms, digit_valid_tfms, norm_of, train_tfms, tta_tfms,
                                      valid_tfms)
from kitbox.vision.tta import blend, predict_tta, resize_and_fit

DOGS = REPO / "competitions" / "samples" / "dogs-vs-cats-redux-kernels-edition"
DIGITS = REPO / "competitions" / "samples" / "digit-recognizer"
WEIGHTS = ("weights", "efficientnet_lite0.in1k.safetensors")


@pytest.fixture(scope="module")
def digits() -> vdata.ImageItems:
    return vdata.from_pixels(pd.read_csv(DIGITS / "train.csv.gz"))


def _photos(tmp_path: Path, n: int = 3) -> list[Path]:
    """A few real cat and dog photos copied into tmp_path/photos."""
    dest = tmp_path / "photos"
    dest.mkdir()
    files = sorted((DOGS / "train").glob("cat.*.jpg"))[:n] + sorted((DOGS / "train").glob("dog.*.jpg"))[:n]
    return [Path(shutil.copy(f, dest / f.name)) for f in files]


# ------------------------------------------------------------------------------------------------ datasets
def test_labels_from_file_names():
    items = vdata.from_filenames(DOGS / "train", r"^(cat|dog)\.", classes=["cat", "dog"])
    names = [p.name for p in items.paths]
    assert len(items) == len(list((DOGS / "train").glob("*.jpg")))
    assert all((lab == 1) == n.startswith("dog") for n, lab in zip(names, items.labels))
    assert items.classes == ["cat", "dog"] and items.ids[0] == items.paths[0].stem


def test_folder_per_class_and_labels_csv(tmp_path):
    photos = _photos(tmp_path)
    for p in photos:
        (tmp_path / "byclass" / p.name.split(".")[0]).mkdir(parents=True, exist_ok=True)
        shutil.copy(p, tmp_path / "byclass" / p.name.split(".")[0] / p.name)
    items = vdata.from_folders(tmp_path / "byclass")
    assert items.classes == ["cat", "dog"] and items.labels.tolist() == [0, 0, 0, 1, 1, 1]

    table = pd.DataFrame({"id": [p.stem for p in photos], "tags": ["cat indoor", "cat", "cat", "dog", "dog", "dog grass"]})
    ml = vdata.from_csv(table, tmp_path / "photos", label_col="tags", suffix=".jpg", multilabel_sep=" ")
    assert ml.classes == ["cat", "dog", "grass", "indoor"]
    assert ml.labels[0].tolist() == [1, 0, 0, 1] and ml.labels[5].tolist() == [0, 1, 1, 0]
    with pytest.raises(KeyError, match="'label'"):
        vdata.from_csv(table, tmp_path / "photos", suffix=".jpg")
    with pytest.raises(FileNotFoundError, match="not in"):
        vdata.from_csv(table.assign(id=table["id"] + "x"), tmp_path / "photos", label_col="tags", suffix=".jpg")


def test_unreadable_images_are_named_up_front(tmp_path):
    photos = _photos(tmp_path)
    # a truncated JPEG (half the bytes of a real photo) and a text file posing as an image
    (tmp_path / "photos" / "cat.truncated.jpg").write_bytes(photos[0].read_bytes()[: photos[0].stat().st_size // 2])
    (tmp_path / "photos" / "dog.notanimage.jpg").write_text("this is not a JPEG")
    with pytest.warns(UserWarning, match=r"skipped 2 unreadable images of 8: cat\.truncated\.jpg, dog\.notanimage\.jpg"):
        items = vdata.from_filenames(tmp_path / "photos", r"^(cat|dog)\.")
    assert len(items) == 6 and sorted(items.skipped) == ["cat.truncated.jpg", "dog.notanimage.jpg"]
    with pytest.raises(vdata.UnreadableImageError, match="cat.truncated.jpg"):
        vdata.from_filenames(tmp_path / "photos", r"^(cat|dog)\.", on_error="raise")
    with pytest.raises(FileNotFoundError, match="no image files"):
        vdata.from_unlabelled(tmp_path)


def test_pixel_columns(digits):
    assert digits.pixels.shape[1:] == (28, 28) and digits.pixels.dtype == np.uint8
    assert set(np.unique(digits.labels)) <= set(range(10)) and digits.classes == [str(i) for i in range(10)]
    table = pd.read_csv(DIGITS / "test.csv.gz")
    with pytest.raises(ValueError, match="expected 784 'pixel\\*' columns"):
        vdata.from_pixels(table.iloc[:, :-1])


def test_loaders_and_transforms_give_normalized_batches(digits):
    photos = vdata.from_filenames(DOGS / "train", r"^(cat|dog)\.").subset(range(8))
    x, y = next(iter(vdata.image_loader(photos, valid_tfms(96, Norm()), batch_size=4, target_dtype=torch.float32)))
    assert x.shape == (4, 3, 96, 96) and x.dtype == torch.float32 and y.dtype == torch.float32
    assert -3 < x.mean() < 3 and x.std() > 0.3  # ImageNet-normalized, not 0..255
    xt, _ = next(iter(vdata.image_loader(photos, train_tfms(64), batch_size=8, shuffle=True, seed=0)))
    assert xt.shape == (8, 3, 64, 64)
    assert [t(image=vdata.read_image(photos.paths[0]))["image"].shape for t in tta_tfms(48, n=3)] == [(48, 48, 3)] * 3
    xd, yd = next(iter(vdata.image_loader(digits, digit_train_tfms(), batch_size=16)))
    assert xd.shape == (16, 1, 28, 28) and yd.dtype == torch.int64


# ------------------------------------------------------------------------------------------------ models and weights
def test_weights_found_offline_and_normalization_follows_them(monkeypatch, tmp_path):
    weights = shared_path(*WEIGHTS)
    model = vmodels.create_model("efficientnet_lite0", 2, weights=weights, ps=0.3)
    assert model.get_classifier().out_features == 2 and model.drop_rate == 0.3
    # Google's TF weights under timm's name: inputs in [-1, 1], as timm's tf_efficientnet_lite0.in1k says
    assert norm_of(model) == Norm((0.5, 0.5, 0.5), (0.5, 0.5, 0.5), 0.875)
    monkeypatch.setenv("KITBOX_WEIGHTS", str(weights.parent))
    assert vmodels.find_weights("efficientnet_lite0") == weights
    monkeypatch.delenv("KITBOX_WEIGHTS")
    kaggle = tmp_path / "kaggle-input"
    (kaggle / "my-weights" / "v1").mkdir(parents=True)
    (kaggle / "my-weights" / "v1" / weights.name).symlink_to(weights)
    monkeypatch.setattr(vmodels, "KAGGLE_INPUT", kaggle)
    assert vmodels.find_weights("efficientnet_lite0").name == weights.name


def test_missing_weights_say_how_to_supply_them(monkeypatch, tmp_path):
    monkeypatch.delenv("KITBOX_WEIGHTS", raising=False)
    monkeypatch.setattr(vmodels, "KAGGLE_INPUT", tmp_path / "nothing")
    monkeypatch.setattr(vmodels, "_hub_cache_file", lambda name: None)
    with pytest.raises(vmodels.WeightsNotFound, match="--weights PATH.*KITBOX_WEIGHTS.*/kaggle/input.*--from-scratch"):
        vmodels.create_model("efficientnet_lite0", 2)
    with pytest.raises(vmodels.WeightsNotFound, match="does not exist"):
        vmodels.create_model("efficientnet_lite0", 2, weights=tmp_path / "missing.safetensors")
    scratch = vmodels.create_model("efficientnet_lite0", 2, pretrained=False)
    assert scratch.weights_file is None


def test_layer_groups_reach_stem_stages_and_head():
    model = vmodels.create_model("efficientnet_lite0", 1, pretrained=False)
    learn = Learner(model, [], task=Task("binary"), progress=False, device="cpu")
    assert len(learn.groups) >= 4  # stem, stages..., head: differential LRs have somewhere to go
    assert {id(p) for p in model.get_classifier().parameters()} <= {id(p) for p in learn.groups[-1]}
    learn.freeze()
    frozen_conv = model.conv_stem.weight
    assert not frozen_conv.requires_grad and model.get_classifier().weight.requires_grad


@pytest.fixture(scope="module")
def pretrained_photos():
    weights = shared_path(*WEIGHTS)
    model = vmodels.create_model("efficientnet_lite0", 1, weights=weights)
    items = vdata.from_filenames(DOGS / "train", r"^(cat|dog)\.", classes=["cat", "dog"])
    pick = np.r_[np.flatnonzero(items.labels == 0)[:12], np.flatnonzero(items.labels == 1)[:12]]
    return model, items.subset(pick)


def test_cached_features_separate_cats_from_dogs(pretrained_photos, tmp_path):
    model, items = pretrained_photos
    norm = norm_of(model)
    feats = cached_features(model, items, valid_tfms(128, norm), tmp_path, "plain128")
    assert feats.shape == (len(items), model.num_features)
    assert len(list(tmp_path.glob("features-plain128-*.pt"))) == 1
    again = cached_features(model, items, valid_tfms(128, norm), tmp_path, "plain128")
    assert torch.equal(feats, again)  # loaded, not recomputed (and identical)
    # real ImageNet features: leave-one-out nearest centroid tells cats from dogs
    f = torch.nn.functional.normalize(feats, dim=1).numpy()
    y = items.labels
    right = 0
    for i in range(len(f)):
        keep = np.arange(len(f)) != i
        centroids = [f[keep & (y == c)].mean(0) for c in (0, 1)]
        right += int(np.argmax([f[i] @ c for c in centroids]) == y[i])
    assert right / len(f) >= 0.85


# ------------------------------------------------------------------------------------------------ training helpers
def _digit_learner(items, size=28, epochs_seed=0):
    train = vdata.image_loader(items, digit_train_tfms(size), batch_size=64, shuffle=True, seed=epochs_seed)
    valid = vdata.image_loader(items, digit_valid_tfms(size), batch_size=256)
    model = vmodels.SmallConvNet(10, widths=(16, 32, 64))
    return Learner(model, train, valid, task=Task("multiclass", n_out=10), metrics=("accuracy",), seed=0,
                   progress=False, device="cpu")


def test_progressive_resizing_continues_the_same_learner(digits):
    items = digits.subset(range(256))
    learn = _digit_learner(items, size=20)
    model, opt = learn.model, learn.opt
    learn.fit(1, 3e-3)
    resize_and_fit(learn, 28, digit_train_tfms, digit_valid_tfms, lambda l: l.fit(1, 3e-3))
    assert learn.model is model and learn.opt is opt and len(learn.history) == 2
    assert next(iter(learn.train_loader))[0].shape[-2:] == (28, 28)
    assert next(iter(learn.valid_loader))[0].shape[-2:] == (28, 28)


def test_tta_blend_and_plain_pass(digits):
    items = digits.subset(range(128))
    learn = _digit_learner(items)
    tta, plain = predict_tta(learn, items, digit_valid_tfms(), [digit_train_tfms(), digit_train_tfms()], beta=0.4)
    np.testing.assert_allclose(plain, learn.predict(vdata.image_loader(items, digit_valid_tfms())), atol=1e-6)
    assert tta.shape == plain.shape and not np.allclose(tta, plain)
    a, b, c = np.full(3, 0.2), np.full(3, 0.6), np.full(3, 1.0)
    np.testing.assert_allclose(blend([a, b, c], beta=0.4), 0.4 * 0.2 + 0.6 * 0.8)
    np.testing.assert_allclose(blend([a, b, c], beta=None), 0.6)


def test_loader_vs_step_speed_is_measured_without_training(digits):
    learn = _digit_learner(digits.subset(range(256)))
    before = {k: v.clone() for k, v in learn.model.state_dict().items()}
    speed = loader_vs_step(learn, n_batches=2)
    assert speed["loader_img_s"] > 0 and speed["step_img_s"] > 0
    assert speed["bottleneck"] in ("loader", "model step")
    assert all(torch.equal(before[k], v) for k, v in learn.model.state_dict().items())


def test_multilabel_two_digit_images(digits):
    """Two real digits side by side carry both labels: sigmoid head + BCE learns them, thresholds come from
    validation and are scored on rows they were not chosen on."""
    n_train = 320
    train_px, test_px = digits.pixels[:n_train], digits.pixels[n_train:]
    x_tr, y_tr = two_digit_images(train_px, digits.labels[:n_train], 1200, seed=0)
    x_va, y_va = two_digit_images(test_px, digits.labels[n_train:], 200, seed=1)
    x_te, y_te = two_digit_images(test_px, digits.labels[n_train:], 200, seed=2)
    assert x_tr.shape == (1200, 28, 56) and set(y_tr.sum(1)) <= {1.0, 2.0}
    make = lambda x, y: vdata.ImageItems(pixels=x, labels=y)  # noqa: E731
    train = vdata.image_loader(make(x_tr, y_tr), digit_valid_tfms(), batch_size=64, shuffle=True, seed=0)
    task = Task("multilabel", n_out=10)
    learn = Learner(vmodels.SmallConvNet(10, widths=(16, 32, 64)), train, task=task, seed=0, progress=False,
                    device="cpu")
    learn.fit_one_cycle(6, 1e-2)
    p_va = learn.predict(vdata.image_loader(make(x_va, y_va), digit_valid_tfms(), batch_size=256))
    p_te = learn.predict(vdata.image_loader(make(x_te, y_te), digit_valid_tfms(), batch_size=256))
    thresholds = best_thresholds(y_va, p_va, beta=2.0)
    assert thresholds.shape == (10,) and ((0 < thresholds) & (thresholds < 1)).all()
    f2 = fbeta_multilabel(y_te, p_te, 2.0, thresholds)
    assert f2 > 0.75, f"F2 {f2:.3f} on unseen two-digit images"
    assert fbeta_multilabel(y_va, p_va, 2.0, thresholds) >= fbeta_multilabel(y_va, p_va, 2.0, 0.5)
