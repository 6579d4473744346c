"""Image loaders on real digits and photos: the same seed gives the same batches (any num_workers), persistent
workers take a new pipeline, settings follow the device, and the on-device digit loader keeps rows and labels."""
import os

import numpy as np
import pandas as pd
import pytest
import torch

from helpers.paths import REPO
from kitbox.training.learner import Learner
from kitbox.training.tasks import Task
from kitbox.vision import data as vdata
from kitbox.vision.models import SmallConvNet
from kitbox.vision.transforms import digit_train_tfms, digit_valid_tfms, train_tfms
from kitbox.vision.tta import set_transforms, tta_loaders

DOGS = REPO / "competitions" / "samples" / "dogs-vs-cats-redux-kernels-edition"
DIGITS = REPO / "competitions" / "samples" / "digit-recognizer"


@pytest.fixture(scope="module")
def digits() -> vdata.ImageItems:
    return vdata.from_pixels(pd.read_csv(DIGITS / "train.csv.gz"))


@pytest.fixture(scope="module")
def photos() -> vdata.ImageItems:
    items = vdata.from_filenames(DOGS / "train", r"^(cat|dog)\.")
    return items.subset(np.r_[np.flatnonzero(items.labels == 0)[:12], np.flatnonzero(items.labels == 1)[:12]])


def _epochs(loader, n: int = 2) -> list[list[tuple[bytes, bytes]]]:
    return [[(x.numpy().tobytes(), y.numpy().tobytes()) for x, y in loader] for _ in range(n)]


# ------------------------------------------------------------------------------------------------ reproducibility
@pytest.mark.parametrize("kind", ["digits", "photos"])
def test_same_seed_same_augmented_batches_with_any_worker_count(kind, digits, photos):
    items, tfm = (digits.subset(range(96)), digit_train_tfms) if kind == "digits" else (photos, lambda: train_tfms(48))
    make = lambda seed, workers: vdata.image_loader(  # noqa: E731
        items, tfm(), batch_size=16, shuffle=True, seed=seed, num_workers=workers, drop_last=True)
    in_process = _epochs(make(7, 0))
    assert _epochs(make(7, 0)) == in_process  # a rerun: byte-identical, epoch after epoch
    # each image's augmentation comes from (seed, epoch, row): two workers give the very same batches
    assert _epochs(make(7, 2)) == in_process
    assert in_process[0] != in_process[1]  # epoch 2 is a new order and new augmentations
    other = _epochs(make(8, 0))
    assert all(o[0] != i[0] for o, i in zip(other[0], in_process[0]))  # another seed: other images in every batch


def test_a_pipelines_own_seed_still_counts(digits):
    """Two copies of one random pipeline through loaders with one seed differ when the pipelines' seeds differ (the
    TTA views of digit_tta_tfms(seed=...)); tta_loaders also seeds each view apart."""
    items = digits.subset(range(32))
    batch = lambda tfm, seed=0: next(iter(vdata.image_loader(items, tfm, batch_size=32, seed=seed)))[0]  # noqa: E731
    assert torch.equal(batch(digit_train_tfms(seed=1)), batch(digit_train_tfms(seed=1)))
    assert not torch.equal(batch(digit_train_tfms(seed=1)), batch(digit_train_tfms(seed=2)))
    plain, view1, view2 = (next(iter(dl))[0] for dl in tta_loaders(items, digit_valid_tfms(),
                                                                       [digit_train_tfms(), digit_train_tfms()], 32))
    assert not torch.equal(view1, view2) and not torch.equal(plain, view1)


def test_unseeded_loader_follows_the_process_seed(digits):
    items = digits.subset(range(64))
    torch.manual_seed(3)
    first = _epochs(vdata.image_loader(items, digit_train_tfms(), batch_size=32, shuffle=True), 1)
    torch.manual_seed(3)
    assert _epochs(vdata.image_loader(items, digit_train_tfms(), batch_size=32, shuffle=True), 1) == first


# ------------------------------------------------------------------------------------------------ workers
class PidStamp:
    """A pipeline that paints the worker's process id into the image: which process made each batch is visible."""

    def __init__(self, size: int):
        self.size = size

    def __call__(self, image):
        return {"image": np.full((self.size, self.size, 1), os.getpid() % 65521, dtype=np.float32)}


def test_persistent_workers_take_a_new_pipeline(digits):
    loader = vdata.image_loader(digits.subset(range(64)), PidStamp(20), batch_size=16, shuffle=True, seed=0,
                                num_workers=2, device="cpu")  # any workers are persistent
    assert loader.persistent_workers and loader.num_workers == 2
    pids = lambda: {int(x[0, 0, 0, 0]) for x, _ in loader}  # noqa: E731
    first = pids()
    assert len(first) == 2 and os.getpid() % 65521 not in first
    assert pids() == first  # the same two workers served epoch 2: persistent
    set_transforms(loader, PidStamp(28))
    x, _ = next(iter(loader))
    assert x.shape[-2:] == (28, 28)  # the workers use the new pipeline...
    assert int(x[0, 0, 0, 0]) not in first  # ...because they were restarted with it


def test_loader_settings_follow_the_device(monkeypatch):
    assert vdata.loader_settings("cpu") == {"num_workers": 0, "pin_memory": False, "persistent_workers": False}
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(4)), raising=False)  # Kaggle: 4 cores
    monkeypatch.delenv("LOCAL_WORLD_SIZE", raising=False)
    assert vdata.loader_settings("cuda") == {"num_workers": 3, "pin_memory": True, "persistent_workers": True}
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(32)), raising=False)
    assert vdata.loader_settings("cuda:0")["num_workers"] == 8
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "4")  # torchrun, 4 GPUs: 8 cores each
    assert vdata.loader_settings("cuda:1")["num_workers"] == 7
    assert vdata.loader_settings("cuda", num_workers=0) == {"num_workers": 0, "pin_memory": True,
                                                           "persistent_workers": False}
    assert vdata.loader_settings("cpu", num_workers=2)["persistent_workers"]


def test_prediction_loader_rows_are_every_row_in_order(photos):
    loader = vdata.image_loader(photos, train_tfms(32), batch_size=10)
    np.testing.assert_array_equal(loader.rows(), np.arange(len(photos)))
    shuffled = vdata.image_loader(photos, train_tfms(32), batch_size=10, shuffle=True, seed=1, target_dtype=torch.float32)
    order = shuffled.rows()  # the next epoch's rows: what the loader then yields
    labels = torch.cat([y for _, y in shuffled]).numpy()
    np.testing.assert_array_equal(labels, photos.labels[order].astype(np.float32))
    assert sorted(order) == list(range(len(photos))) and shuffled.epoch == 1


# ------------------------------------------------------------------------------------------------ on-device loader
def test_device_loader_matches_the_albumentations_pipeline(digits):
    items = digits.subset(range(100))
    on_device = vdata.DeviceImageLoader(items, batch_size=32, device="cpu")
    plain = vdata.image_loader(items, digit_valid_tfms(), batch_size=32)
    for ((x,), y), (x_ref, y_ref) in zip(on_device, plain):
        assert x.shape == x_ref.shape and x.dtype == torch.float32
        torch.testing.assert_close(x, x_ref, atol=1e-5, rtol=0)
        assert torch.equal(y, y_ref)
    assert len(on_device) == len(plain) == 4


def test_device_loader_augments_reproducibly_and_keeps_rows(digits):
    items = digits.subset(range(200))
    items = vdata.ImageItems(pixels=items.pixels, labels=np.arange(200))  # label = row id: alignment is visible
    make = lambda seed, **kw: vdata.DeviceImageLoader(items, batch_size=64, shuffle=True, seed=seed, device="cpu",  # noqa: E731
                                                       augment=True, **kw)
    a, b = make(5), make(5)
    epochs_a = [[(x.clone(), y.clone()) for (x,), y in a] for _ in range(2)]
    epochs_b = [[(x.clone(), y.clone()) for (x,), y in b] for _ in range(2)]
    for ea, eb in zip(epochs_a, epochs_b):
        assert all(torch.equal(xa, xb) and torch.equal(ya, yb) for (xa, ya), (xb, yb) in zip(ea, eb))
    for epoch in epochs_a:  # every row exactly once per epoch, in a new order each epoch
        assert sorted(torch.cat([y for _, y in epoch]).tolist()) == list(range(200))
    assert not torch.equal(epochs_a[0][0][1], epochs_a[1][0][1])
    first_c = next(iter(make(6)))
    assert not torch.equal(first_c[1], epochs_a[0][0][1])
    # the identity map returns each row's own image: labels stay with their images
    still = make(5, rotate=0.0, scale=(1.0, 1.0), translate=0.0)
    reference = vdata.DeviceImageLoader(items, batch_size=200, device="cpu")
    (all_x,), _ = next(iter(reference))
    for (x, ), y in still:
        torch.testing.assert_close(x, all_x[y], atol=1e-5, rtol=0)
    # a real augmentation moves ink, but keeps the digit (same mass, give or take the zoom)
    x, y = epochs_a[0][0]
    assert (x - all_x[y]).abs().mean() > 0.1
    ink = lambda t: (t * 0.3081 + 0.1307).sum((1, 2, 3))  # noqa: E731
    ratio = ink(x) / ink(all_x[y])
    assert 0.7 < float(ratio.min()) and float(ratio.max()) < 1.3


def test_device_loader_trains_a_learner(digits):
    train = vdata.DeviceImageLoader(digits.subset(range(400)), batch_size=32, shuffle=True, seed=0, device="cpu",
                                    augment=True, drop_last=True)
    valid = vdata.DeviceImageLoader(digits.subset(range(400, 500)), batch_size=256, device="cpu")
    learn = Learner(SmallConvNet(10, widths=(16, 32, 64)), train, valid, Task("multiclass", n_out=10),
                    metrics=("accuracy",), seed=0, progress=False, device="cpu")
    learn.fit_one_cycle(4, 5e-3)
    assert learn.history[-1]["accuracy"] > 0.8
    pred = learn.predict(vdata.DeviceImageLoader(digits.subset(range(400, 500)), batch_size=64, device="cpu"))
    assert pred.shape == (100, 10)


@pytest.mark.cuda
def test_gpu_loaders_match_the_cpu(digits):
    """On CUDA: the on-device loader gives the CPU's batches (same maps, same order), and image_loader's CUDA
    settings (workers, pinned, persistent) give the same bytes as one process without workers."""
    if not torch.cuda.is_available():
        pytest.skip("needs a CUDA GPU")
    items = digits.subset(range(256))
    make = lambda device: vdata.DeviceImageLoader(items, batch_size=64, shuffle=True, seed=3, device=device,  # noqa: E731
                                                   augment=True)
    for ((xg,), yg), ((xc,), yc) in zip(make("cuda"), make("cpu")):
        assert xg.device.type == "cuda" and torch.equal(yg.cpu(), yc)
        torch.testing.assert_close(xg.cpu(), xc, atol=1e-4, rtol=0)
    loader = vdata.image_loader(items, digit_train_tfms(), batch_size=64, shuffle=True, seed=3, device="cuda")
    assert loader.num_workers >= 1 and loader.pin_memory and loader.persistent_workers
    x, _ = next(iter(loader))
    assert x.is_pinned()
    reference = vdata.image_loader(items, digit_train_tfms(), batch_size=64, shuffle=True, seed=3, num_workers=0)
    assert _epochs(loader) == _epochs(reference)


def test_every_loader_counts_its_batches_and_draws_its_epoch_order_the_same_way():
    """One sampling module: batches per epoch (short last batch kept unless drop_last), and an epoch's order that
    is a function of (seed, epoch) alone, so every rank and every rerun draws it again."""
    from kitbox.training.sampling import epoch_batches, n_batches

    assert (n_batches(10, 4), n_batches(10, 4, drop_last=True), n_batches(8, 4)) == (3, 2, 2)
    first = epoch_batches(10, 4, shuffle=True, seed=3, epoch=1, drop_last=False)
    assert [len(b) for b in first] == [4, 4, 2] and sorted(np.concatenate(first)) == list(range(10))
    again = epoch_batches(10, 4, shuffle=True, seed=3, epoch=1, drop_last=False)
    assert all((a == b).all() for a, b in zip(first, again))
    other_epoch = np.concatenate(epoch_batches(10, 4, shuffle=True, seed=3, epoch=2, drop_last=False))
    assert not (other_epoch == np.concatenate(first)).all()
    assert [len(b) for b in epoch_batches(10, 4, shuffle=False, seed=3, epoch=0, drop_last=True)] == [4, 4]
