"""kitbox.vision on real images: the embedded Dogs vs Cats and digit samples, and the shared ImageNet weights."""
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import timm
import torch
from huggingface_hub.errors import LocalEntryNotFoundError
from PIL import Image

from helpers.paths import REPO, shared_path
from kitbox.training.learner import Learner
from kitbox.metrics import fbeta_multilabel
from kitbox.training.tasks import Task
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
    folder = tmp_path / "photos"
    source = photos[0].read_bytes()
    (folder / "cat.truncated.jpg").write_bytes(source[: len(source) // 2])  # half a real JPEG
    (folder / "dog.empty.jpg").write_bytes(b"")
    (folder / "dog.notanimage.jpg").write_text("this is not a JPEG")
    (folder / "cat.notes.txt").write_text("labels by hand")  # not an image file: named, not silently ignored
    with Image.open(photos[1]) as im:
        im.save(folder / "cat.savedaspng.jpg", format="PNG")  # a PNG under a .jpg name: must be read, not skipped
        im.save(folder / "dog.animated.gif")  # a GIF: read too (OpenCV and PIL both decode it)
    with pytest.warns(UserWarning, match=r"skipped 3 unreadable images of 11: cat\.truncated\.jpg \(truncated\), "
                                         r"dog\.empty\.jpg \(empty file\), dog\.notanimage\.jpg \(not an image"):
        items = vdata.from_filenames(folder, r"^(cat|dog)\.")
    assert len(items) == 8 and {"cat.savedaspng.jpg", "dog.animated.gif"} <= {p.name for p in items.paths}
    reasons = {s.file: s.reason for s in items.skipped}
    assert reasons == {"cat.notes.txt": "not an image file type (.txt)", "cat.truncated.jpg": "truncated",
                       "dog.empty.jpg": "empty file", "dog.notanimage.jpg": "not an image PIL or OpenCV knows"}
    # the PNG and the GIF decode to the photo's own pixels
    original = vdata.read_image(photos[1])
    np.testing.assert_array_equal(vdata.read_image(folder / "cat.savedaspng.jpg"), original)
    assert vdata.read_image(folder / "dog.animated.gif").shape == original.shape
    # skipped files survive a fold's subset and read as one line in a run summary
    fold = items.subset([0, 1])
    assert [s.file for s in fold.skipped] == [s.file for s in items.skipped]
    summary = fold.skipped_summary()
    assert summary.startswith("skipped 4 files: cat.notes.txt (not an image file type (.txt)), cat.truncated.jpg")
    assert "\n" not in summary and items.subset(range(8)).skipped_summary(shown=1).endswith("and 3 more")
    assert vdata.from_pixels(pd.read_csv(DIGITS / "test.csv.gz"), label_col=None).skipped_summary() == \
        "all 100 images readable"
    with pytest.raises(vdata.UnreadableImageError, match="cat.truncated.jpg"):
        vdata.from_filenames(folder, r"^(cat|dog)\.", on_error="raise")
    with pytest.raises(FileNotFoundError, match="no image files"):
        vdata.from_unlabelled(tmp_path)


def test_unreadable_test_images_keep_their_ids(tmp_path):
    """A test photo that cannot be read still needs a row in the submission: its id comes back in skipped_ids."""
    test_dir = tmp_path / "test"
    test_dir.mkdir()
    for f in sorted((DOGS / "test").glob("*.jpg"))[:4]:
        shutil.copy(f, test_dir / f.name)
    broken = sorted(test_dir.iterdir())[1]
    broken.write_bytes(broken.read_bytes()[:300])
    with pytest.warns(UserWarning, match=broken.name):
        items = vdata.from_unlabelled(test_dir)
    assert len(items) == 3 and items.skipped_ids == [broken.stem] and broken.stem not in items.ids
    assert f"{broken.name} (corrupt JPEG (its header is cut short or damaged))" in items.skipped_summary()


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
    monkeypatch.delenv("KITBOX_WEIGHTS", raising=False)
    model = vmodels.create_model("efficientnet_lite0", 2, weights=weights, ps=0.3)
    assert model.get_classifier().out_features == 2 and model.drop_rate == 0.3
    assert model.weights_source == f"file {weights}" and model.weights_file == str(weights)
    # Google's TF weights under timm's name: inputs in [-1, 1], as timm's tf_efficientnet_lite0.in1k says
    assert norm_of(model) == Norm((0.5, 0.5, 0.5), (0.5, 0.5, 0.5), 0.875)
    monkeypatch.setenv("KITBOX_WEIGHTS", str(weights.parent))
    assert vmodels.locate_weights("efficientnet_lite0").source == f"KITBOX_WEIGHTS {weights}"
    assert vmodels.find_weights("efficientnet_lite0") == weights
    monkeypatch.delenv("KITBOX_WEIGHTS")
    kaggle = tmp_path / "kaggle-input"
    (kaggle / "my-weights" / "v1").mkdir(parents=True)
    (kaggle / "my-weights" / "v1" / weights.name).symlink_to(weights)
    monkeypatch.setattr(vmodels, "KAGGLE_INPUT", kaggle)
    found = vmodels.locate_weights("efficientnet_lite0")
    assert found.path.name == weights.name and found.source == f"Kaggle input {found.path}"
    assert vmodels.create_model("efficientnet_lite0", 2).weights_source == f"Kaggle input {found.path}"


def test_weights_files_are_matched_by_model_name(tmp_path):
    """resnet50d's file is not resnet50's; a hub snapshot folder (NAME.tag/model.safetensors) is found by its name."""
    (tmp_path / "resnet50d.ra2_in1k.safetensors").write_bytes(b"x")
    (tmp_path / "efficientnet_lite0.ra_in1k").mkdir()
    (tmp_path / "efficientnet_lite0.ra_in1k" / "model.safetensors").write_bytes(b"x")
    (tmp_path / "efficientnet_lite0.ra_in1k" / "config.json").write_text("{}")
    with pytest.raises(vmodels.WeightsNotFound, match="no weights file for resnet50 "):
        vmodels.locate_weights("resnet50", tmp_path)
    assert vmodels.locate_weights("resnet50d", tmp_path).path.name == "resnet50d.ra2_in1k.safetensors"
    assert vmodels.find_weights("efficientnet_lite0", tmp_path) == tmp_path / "efficientnet_lite0.ra_in1k" / "model.safetensors"


def _no_local_weights(monkeypatch, tmp_path):
    monkeypatch.delenv("KITBOX_WEIGHTS", raising=False)
    monkeypatch.setattr(vmodels, "KAGGLE_INPUT", tmp_path / "nothing")
    monkeypatch.setattr(vmodels, "_hub_cache_file", lambda name: None)


def test_missing_weights_say_how_to_supply_them(monkeypatch, tmp_path):
    _no_local_weights(monkeypatch, tmp_path)
    with pytest.raises(vmodels.WeightsNotFound) as err:
        vmodels.create_model("efficientnet_lite0", 2)
    lines = str(err.value).splitlines()
    assert "downloads nothing unasked" in lines[0]
    offline, kaggle, online, make, scratch = lines[1:]
    assert "--weights PATH" in offline and "KITBOX_WEIGHTS=PATH" in offline
    assert "efficientnet_lite0.ra_in1k.safetensors" in kaggle and "/kaggle/input" in kaggle
    assert "--download-weights" in online and "timm.create_model('efficientnet_lite0', pretrained=True)" in online
    assert "st.save_file(" in make and "--from-scratch" in scratch
    with pytest.raises(vmodels.WeightsNotFound, match="does not exist"):
        vmodels.create_model("efficientnet_lite0", 2, weights=tmp_path / "missing.safetensors")
    scratch_model = vmodels.create_model("efficientnet_lite0", 2, pretrained=False)
    assert scratch_model.weights_file is None and scratch_model.weights_source == "random (from scratch)"


@pytest.mark.parametrize("offline_error", [
    ConnectionError("Failed to resolve 'huggingface.co' ([Errno -2] Name or service not known)"),
    LocalEntryNotFoundError("An error happened while trying to locate the file on the Hub and we cannot find the "
                            "requested files in the local cache."),  # what huggingface_hub raises after its retries
])
def test_download_offline_names_the_fix(monkeypatch, tmp_path, offline_error):
    """--download-weights on a machine without Internet: a message naming the fix, not the hub's traceback."""
    _no_local_weights(monkeypatch, tmp_path)
    calls = []

    def unreachable_hub(repo_id, filename, **kwargs):
        calls.append((repo_id, filename))
        raise offline_error

    monkeypatch.setattr(timm.models._hub, "hf_hub_download", unreachable_hub)
    with pytest.raises(vmodels.WeightsDownloadFailed) as err:
        vmodels.create_model("efficientnet_lite0", 2, download=True)
    assert calls and calls[0][0] == "timm/efficientnet_lite0.ra_in1k"  # the download really was attempted
    message = str(err.value)
    assert f"failed ({type(offline_error).__name__}: " in message and "cannot reach the hub" in message
    assert "Drop --download-weights" in message and "--weights PATH" in message and "/kaggle/input" in message
    assert "--download-weights (create_model" not in message  # no advice to do again what just failed
    assert isinstance(err.value, vmodels.WeightsNotFound)  # callers catching the old error still catch it


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
    # the same view name over a pipeline with other settings is another cache entry, not stale features
    other = cached_features(model, items.subset(range(4)), valid_tfms(96, norm), tmp_path, "plain128")
    assert other.shape == (4, model.num_features)
    assert len(list(tmp_path.glob("features-plain128-*.pt"))) == 2
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


@pytest.mark.cuda
def test_features_and_tta_run_where_the_gpu_is(digits):
    """A model fresh on the CPU computes features on the GPU (fp16 autocast) and is put back; TTA runs on the
    Learner's device."""
    if not torch.cuda.is_available():
        pytest.skip("needs a CUDA GPU")
    from kitbox.vision.features import compute_features
    from kitbox.vision.models import model_device

    model = vmodels.create_model("efficientnet_lite0", 2, pretrained=False)
    seen = []
    model.conv_stem.register_forward_hook(lambda m, i, o: seen.append((i[0].device.type, o.dtype)))
    photos = vdata.from_filenames(DOGS / "train", r"^(cat|dog)\.").subset(range(8))
    feats = compute_features(model, photos, valid_tfms(64), batch_size=4)
    assert feats.shape == (8, model.num_features) and feats.device.type == "cpu" and feats.dtype == torch.float32
    assert seen and all(d == "cuda" and t == torch.float16 for d, t in seen)
    assert model_device(model).type == "cpu"
    learn = Learner(vmodels.SmallConvNet(10, widths=(16, 32, 64)), [], task=Task("multiclass", n_out=10), progress=False)
    assert learn.device.type == "cuda"
    tta, plain = predict_tta(learn, digits.subset(range(64)), digit_valid_tfms(), [digit_train_tfms()], beta=0.4)
    assert tta.shape == plain.shape == (64, 10)
