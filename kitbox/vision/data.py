"""Image datasets and loaders: items (files or pixel arrays + labels) from the usual Kaggle layouts, checked up front,
and seeded loaders (workers on CUDA, sharded under torchrun, or the whole set on the device for small images).

Every constructor returns :class:`ImageItems`. Unreadable images are found by :func:`check_images` before any worker
starts and are never dropped silently: ``items.skipped`` names each one with the reason, and survives ``subset``.
"""
from __future__ import annotations

import os
import random
import re
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import cv2
import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from PIL import Image, UnidentifiedImageError
from torch.utils.data import DataLoader, Dataset, get_worker_info

from kitbox.training import distributed
from kitbox.training.sampling import epoch_batches, n_batches, require_seed, seed_sequence

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp", ".gif")


class UnreadableImageError(ValueError):
    """Raised when ``on_error="raise"`` and some images cannot be decoded."""


@dataclass(frozen=True)
class SkippedImage:
    """An image left out of a dataset: its ``id`` (what the submission calls it), file name and why."""

    id: object
    file: str
    reason: str


@dataclass
class ImageItems:
    """What a dataset holds: ``paths`` (files) or ``pixels`` (uint8 array n x H x W [x C]), plus optional labels.

    ``labels`` are class indices (n,), 0/1 rows (n, k) for multi-label, or None for test images;
    ``classes`` names the label values; ``ids`` are what the submission calls each image; ``skipped`` lists the
    images of the source that are not here (unreadable files, other files in an image folder): a test set's
    skipped ids still need a row in the submission (the prior), see :attr:`skipped_ids`.
    """

    paths: list[Path] | None = None
    pixels: np.ndarray | None = None
    labels: np.ndarray | None = None
    classes: list[str] = field(default_factory=list)
    ids: list | None = None
    skipped: list[SkippedImage] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.paths) if self.paths is not None else len(self.pixels)

    def subset(self, idx) -> "ImageItems":
        """The rows ``idx``; ``skipped`` is kept (it describes the source, so a fold's run summary still says it)."""
        idx = np.asarray(idx)
        return ImageItems(
            paths=[self.paths[i] for i in idx] if self.paths is not None else None,
            pixels=self.pixels[idx] if self.pixels is not None else None,
            labels=self.labels[idx] if self.labels is not None else None,
            classes=self.classes,
            ids=[self.ids[i] for i in idx] if self.ids is not None else None,
            skipped=list(self.skipped),
        )

    @property
    def skipped_ids(self) -> list:
        """The ids left out, e.g. test images a submission must fill with the prior."""
        return [s.id for s in self.skipped]

    def skipped_summary(self, shown: int = 5) -> str:
        """One line for a run summary: how many were skipped, the first few by name with the reason."""
        if not self.skipped:
            return f"all {len(self)} images readable"
        names = ", ".join(f"{s.file} ({s.reason})" for s in self.skipped[:shown])
        more = f" and {len(self.skipped) - shown} more" if len(self.skipped) > shown else ""
        return f"skipped {len(self.skipped)} files: {names}{more}"


# ---------------------------------------------------------------------------------------------- reading and checking
def read_image(path: Path) -> np.ndarray:
    """An RGB uint8 array (H, W, 3); raises UnreadableImageError naming the file when it cannot be decoded.

    OpenCV decodes by content, not by suffix (a PNG named .jpg is read); what it cannot decode, PIL tries, so this
    reads every file :func:`check_images` passed.
    """
    image = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if image is not None:
        return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)
    try:
        with Image.open(path) as opened:
            return np.asarray(opened.convert("RGB"))
    except (OSError, ValueError, Image.DecompressionBombError) as err:
        raise UnreadableImageError(f"cannot decode image {path}: {why_unreadable(path) or err}") from None


# first bytes of the formats read here: a file that starts like an image but does not open is a damaged image
_SIGNATURES = ((b"\xff\xd8\xff", "JPEG"), (b"\x89PNG", "PNG"), (b"GIF8", "GIF"), (b"BM", "BMP"), (b"RIFF", "WebP"),
               (b"II*\x00", "TIFF"), (b"MM\x00*", "TIFF"))


def why_unreadable(path: Path) -> str | None:
    """None when ``path`` decodes, else the reason in a few words (empty file, not an image, truncated...)."""
    path = Path(path)
    try:
        if path.stat().st_size == 0:
            return "empty file"
        # PIL raises on a truncated JPEG where OpenCV would quietly return a half-grey image; draft() decodes at
        # 1/8 scale so checking thousands of photos takes seconds.
        with Image.open(path) as image:
            image.draft("RGB", (image.width // 8 + 1, image.height // 8 + 1))
            image.load()
        return None
    except UnidentifiedImageError:
        with open(path, "rb") as f:
            head = f.read(12)
        kind = next((k for sig, k in _SIGNATURES if head.startswith(sig)), None)
        return f"corrupt {kind} (its header is cut short or damaged)" if kind else "not an image PIL or OpenCV knows"
    except Image.DecompressionBombError:
        return "too many pixels (a decompression bomb?)"
    except (OSError, ValueError) as err:
        text = str(err)
        return "truncated" if "truncated" in text else f"corrupt ({text})"


def check_images(items: ImageItems, on_error: str = "skip") -> ImageItems:
    """Decode every file once, before training: ``on_error="skip"`` leaves unreadable ones out with a warning naming
    them (kept in ``items.skipped`` with the reason), ``"raise"`` raises UnreadableImageError listing them."""
    if on_error not in ("skip", "raise"):
        raise ValueError(f"on_error must be 'skip' or 'raise', not {on_error!r}")
    if items.paths is None:
        return items
    reasons = [why_unreadable(p) for p in items.paths]
    bad = [i for i, r in enumerate(reasons) if r is not None]
    if not bad:
        return items
    ids = items.ids if items.ids is not None else [p.stem for p in items.paths]
    skipped = [SkippedImage(ids[i], items.paths[i].name, reasons[i]) for i in bad]
    shown = ", ".join(f"{s.file} ({s.reason})" for s in skipped[:10])
    shown += f" and {len(bad) - 10} more" if len(bad) > 10 else ""
    if on_error == "raise":
        raise UnreadableImageError(
            f"{len(bad)} of {len(items)} images cannot be decoded: {shown}; remove or replace them, "
            "or pass on_error='skip' to go on without them"
        )
    warnings.warn(f"skipped {len(bad)} unreadable images of {len(items)}: {shown}", stacklevel=2)
    kept = items.subset(np.setdiff1d(np.arange(len(items)), bad))
    kept.skipped = list(items.skipped) + skipped
    return kept


def _image_files(folder: Path) -> tuple[list[Path], list[SkippedImage]]:
    """The image files of a folder, and the other files in it (named, so nothing vanishes unannounced; hidden
    files such as .DS_Store are not counted)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"image folder {folder} does not exist")
    files = sorted(p for p in folder.iterdir() if p.is_file() and not p.name.startswith("."))
    images = [p for p in files if p.suffix.lower() in IMAGE_SUFFIXES]
    if not images:
        raise FileNotFoundError(f"no image files ({', '.join(IMAGE_SUFFIXES)}) in {folder}")
    others = [SkippedImage(p.stem, p.name, f"not an image file type ({p.suffix or 'no suffix'})")
              for p in files if p.suffix.lower() not in IMAGE_SUFFIXES]
    return images, others


def _encode(names: Sequence[str], classes: Sequence[str] | None) -> tuple[np.ndarray, list[str]]:
    classes = sorted(set(names)) if classes is None else list(classes)
    index = {c: i for i, c in enumerate(classes)}
    unknown = sorted(set(names) - set(index))
    if unknown:
        raise ValueError(f"labels {unknown[:5]} are not among the classes {classes}")
    return np.array([index[n] for n in names], dtype=np.int64), classes


def from_folders(root: Path, classes: Sequence[str] | None = None, on_error: str = "skip") -> ImageItems:
    """``root/<class>/<image>``: one sub-folder per class (ImageNet / fastai layout)."""
    root = Path(root)
    folders = sorted(p for p in root.iterdir() if p.is_dir()) if root.is_dir() else []
    if not folders:
        raise FileNotFoundError(f"{root} has no class sub-folders (expected {root}/<class>/<image>.jpg)")
    paths, names, others = [], [], []
    for folder in folders:
        images, not_images = _image_files(folder)
        paths += images
        names += [folder.name] * len(images)
        others += not_images
    labels, classes = _encode(names, classes)
    items = ImageItems(paths=paths, labels=labels, classes=classes, ids=[p.stem for p in paths], skipped=others)
    return check_images(items, on_error)


def from_filenames(
    folder: Path, label_of: str | Callable[[str], str] = r"^([a-zA-Z]+)[._]", classes: Sequence[str] | None = None,
    on_error: str = "skip",
) -> ImageItems:
    """Labels inside file names, e.g. Dogs vs Cats' ``cat.12.jpg``: ``label_of`` is a regex whose first group is
    the label, or a function of the file name."""
    files, others = _image_files(folder)
    if isinstance(label_of, str):
        pattern = re.compile(label_of)

        def label_of(name, pattern=pattern):
            match = pattern.search(name)
            if match is None:
                raise ValueError(f"file name {name!r} does not match the label pattern {pattern.pattern!r}")
            return match.group(1)

    names = [label_of(f.name) for f in files]
    labels, classes = _encode(names, classes)
    items = ImageItems(paths=files, labels=labels, classes=classes, ids=[f.stem for f in files], skipped=others)
    return check_images(items, on_error)


def from_unlabelled(folder: Path, on_error: str = "skip") -> ImageItems:
    """Test images: every image in a folder, ids are the file stems (``test/123.jpg`` -> ``"123"``).

    An unreadable test image cannot be dropped from a submission: its id stays in ``items.skipped_ids`` for the
    submission to fill with the prior (and say so).
    """
    files, others = _image_files(folder)
    return check_images(ImageItems(paths=files, ids=[f.stem for f in files], skipped=others), on_error)


def from_csv(
    csv: Path | pd.DataFrame, folder: Path, id_col: str = "id", label_col: str | None = "label", suffix: str = "",
    multilabel_sep: str | None = None, classes: Sequence[str] | None = None, on_error: str = "skip",
) -> ImageItems:
    """A labels table (``id,label``) next to an image folder; file is ``folder / (id + suffix)``.

    With ``multilabel_sep`` (e.g. ``" "``, Planet's tags) labels become 0/1 rows over the sorted tags.
    """
    table = pd.read_csv(csv) if not isinstance(csv, pd.DataFrame) else csv
    name = csv if not isinstance(csv, pd.DataFrame) else "the labels table"
    for col in [id_col] + ([label_col] if label_col else []):
        if col not in table.columns:
            raise KeyError(f"{name} has no column {col!r}; columns are {list(table.columns)}")
    folder = Path(folder)
    paths = [folder / f"{i}{suffix}" for i in table[id_col]]
    missing = [p.name for p in paths if not p.exists()]
    if missing:
        raise FileNotFoundError(f"{len(missing)} images listed in {name} are not in {folder}, e.g. {missing[:5]}")
    labels, found = None, []
    if label_col is not None:
        values = table[label_col].astype(str).tolist()
        if multilabel_sep is not None:
            tags = [v.split(multilabel_sep) if v else [] for v in values]
            found = sorted({t for row in tags for t in row}) if classes is None else list(classes)
            index = {c: i for i, c in enumerate(found)}
            labels = np.zeros((len(tags), len(found)), dtype=np.float32)
            for r, row in enumerate(tags):
                labels[r, [index[t] for t in row]] = 1.0
        else:
            labels, found = _encode(values, classes)
    items = ImageItems(paths=paths, labels=labels, classes=found, ids=table[id_col].tolist())
    return check_images(items, on_error)


def from_pixels(
    table: pd.DataFrame, prefix: str = "pixel", shape: tuple[int, int] = (28, 28), label_col: str | None = "label",
) -> ImageItems:
    """Pixel columns in a CSV (Digit Recognizer: ``label,pixel0..pixel783``), grey levels 0..255, row-major."""
    cols = [c for c in table.columns if c.startswith(prefix)]
    n_pixels = shape[0] * shape[1]
    if len(cols) != n_pixels:
        raise ValueError(f"expected {n_pixels} '{prefix}*' columns for {shape[0]}x{shape[1]} images, found {len(cols)}")
    values = table[cols].to_numpy()
    if values.min() < 0 or values.max() > 255:
        raise ValueError(f"pixel values must be 0..255, found {values.min()}..{values.max()}")
    pixels = values.astype(np.uint8).reshape(len(table), *shape)
    labels, classes = None, []
    if label_col is not None and label_col in table.columns:
        labels = table[label_col].to_numpy().astype(np.int64)
        classes = [str(c) for c in range(int(labels.max()) + 1)]
    return ImageItems(pixels=pixels, labels=labels, classes=classes, ids=list(range(1, len(table) + 1)))


# ---------------------------------------------------------------------------------------------- seeded loaders
_MASK64 = (1 << 64) - 1


def _splitmix64(x: int) -> int:
    """SplitMix64's output function: a cheap, well-mixed 64-bit hash (Steele et al., the seeder of xoshiro)."""
    x = (x + 0x9E3779B97F4A7C15) & _MASK64
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & _MASK64
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & _MASK64
    return x ^ (x >> 31)


def _hash64(*values: int) -> int:
    """One 64-bit seed from several integers (per image: loader seed, epoch, row, pipeline seed)."""
    h = 0
    for v in values:
        h = _splitmix64(h ^ (int(v) & _MASK64))
    return h


def _base_seed(seed: int | None, shuffle: bool) -> int:
    """The loader's seed; without one, the process's torch seed (set by ``seed_everything``), so a seeded run is
    still reproducible and no random number is consumed. Under torchrun a shuffled loader needs an explicit seed:
    every rank must draw the same order."""
    require_seed(shuffle, seed, "image loader")
    return int(torch.initial_seed() if seed is None else seed)


class ImageDataset(Dataset):
    """Items through an albumentations pipeline to (C, H, W) float tensors.

    ``dataset[(row, epoch)]`` (what :func:`image_loader` asks for) reseeds the pipeline from (``seed``, epoch, row,
    the pipeline's own seed) first: each image's augmentation is fixed by the seed whichever worker, rank or batch
    it lands in, so runs repeat exactly with any ``num_workers`` and under torchrun. ``dataset[row]`` applies the
    pipeline with whatever random state it has.
    """

    def __init__(self, items: ImageItems, transform, target_dtype=None, seed: int = 0):
        self.items, self.transform, self.seed = items, transform, seed
        self._rng, self._py = np.random.Generator(np.random.PCG64()), random.Random()
        labels = items.labels
        self.targets = None if labels is None else torch.as_tensor(labels, dtype=target_dtype)

    def __len__(self) -> int:
        return len(self.items)

    def image(self, i: int) -> np.ndarray:
        if self.items.paths is not None:
            return read_image(self.items.paths[i])
        return self.items.pixels[i]

    def _reseed(self, row: int, epoch: int) -> None:
        transform = self.transform
        if not hasattr(transform, "set_random_state"):  # a plain function: seeded per worker by seed_worker
            return
        if getattr(transform, "random_generator", None) is not self._rng:
            # hand the pipeline this dataset's generators once, then reseed them in place for every image: ~10 us,
            # where albumentations' set_random_seed (a new generator per operation) costs ~150 us
            transform.set_random_state(self._rng, self._py)
        own = getattr(transform, "seed", None)
        h = _hash64(self.seed, epoch, row, own if isinstance(own, int) else -1)
        self._rng.bit_generator.state = {"bit_generator": "PCG64", "has_uint32": 0, "uinteger": 0,
                                         "state": {"state": (_splitmix64(h) << 64) | h, "inc": (h << 1) | 1}}
        self._py.seed(h)

    def __getitem__(self, key):
        if isinstance(key, tuple):
            i, epoch = key
            self._reseed(i, epoch)
        else:
            i = key
        image = self.transform(image=self.image(i))["image"]
        if image.ndim == 2:  # grey pixels: one channel
            image = image[:, :, None]
        x = torch.from_numpy(np.ascontiguousarray(image.transpose(2, 0, 1)))
        return (x,) if self.targets is None else (x, self.targets[i])


def seed_worker(worker_id: int) -> None:
    """DataLoader ``worker_init_fn``: seed numpy, ``random`` and the worker's albumentations pipeline from the
    worker's torch seed (the loader's seed + worker id; torch's "Randomness in multi-process data loading"), so
    code that draws from the global generators differs between workers and repeats between runs."""
    seed = torch.initial_seed() % 2**32
    np.random.seed(seed)
    random.seed(seed)
    info = get_worker_info()
    transform = getattr(info.dataset, "transform", None) if info is not None else None
    if hasattr(transform, "set_random_state"):  # not set_random_seed: that would overwrite the pipeline's own seed
        transform.set_random_state(np.random.default_rng(seed), random.Random(seed))


class EpochBatchSampler:
    """``batch_sampler`` of an :class:`ImageLoader`: each ``iter`` is the next epoch, yielding this rank's share of
    every global batch as ``(row, epoch)`` keys. It counts epochs itself (the Learner never calls ``set_epoch``)."""

    def __init__(self, n: int, batch_size: int, shuffle: bool, seed: int, drop_last: bool):
        self.n, self.batch_size, self.shuffle, self.seed, self.drop_last = n, batch_size, shuffle, seed, drop_last
        self.epoch = 0

    def batches(self, epoch: int) -> list[np.ndarray]:
        return epoch_batches(self.n, self.batch_size, self.shuffle, self.seed, epoch, self.drop_last)

    def __len__(self) -> int:
        return n_batches(self.n, self.batch_size, self.drop_last)

    def __iter__(self):
        epoch, self.epoch = self.epoch, self.epoch + 1
        for batch in self.batches(epoch):
            share, _ = distributed.batch_share(batch)
            yield [(int(i), epoch) for i in share]


def _usable_cores() -> int:
    try:
        cores = len(os.sched_getaffinity(0))  # a container's CPU limit, not the host's core count
    except AttributeError:
        cores = os.cpu_count() or 1
    # torchrun starts one process per GPU on this machine: they share the cores
    return max(1, cores // int(os.environ.get("LOCAL_WORLD_SIZE", 1)))


def loader_settings(device=None, num_workers: int | None = None) -> dict:
    """DataLoader settings for a model on ``device`` (default: CUDA when available, as the Learner chooses).

    On CUDA: ``min(8, cores - 1)`` workers (Kaggle's 4 cores: 3), one core left for the training process that
    feeds the GPU; pinned memory for asynchronous copies; persistent workers, which are not re-forked every epoch.
    On CPU: no workers. The model step there already uses every core through torch's threads and costs far more
    than decoding (efficientnet_lite0 at 224 px: ~60 ms an image to train, ~4 ms to decode and augment), so
    workers would only take cores from it; pass ``num_workers`` when ``loader_vs_step`` says the loader is behind.
    """
    device = torch.device(device) if device is not None else torch.device("cuda" if torch.cuda.is_available() else "cpu")
    on_cuda = device.type == "cuda"
    if num_workers is None:
        num_workers = min(8, max(1, _usable_cores() - 1)) if on_cuda else 0
    return {"num_workers": int(num_workers), "pin_memory": on_cuda, "persistent_workers": num_workers > 0}


class ImageLoader:
    """Batches ``(images, target)`` (``(images,)`` without labels) of an :class:`ImageDataset`, through a torch
    DataLoader with :class:`EpochBatchSampler`. Made by :func:`image_loader`.

    ``set_transform`` swaps the pipeline (progressive resizing) and also reaches persistent workers: the DataLoader,
    and with it the workers holding a copy of the old pipeline, is rebuilt at the next epoch.
    """

    def __init__(self, dataset: ImageDataset, batch_size: int, shuffle: bool, seed: int, drop_last: bool,
                 num_workers: int, pin_memory: bool, persistent_workers: bool):
        self.dataset, self.batch_size = dataset, batch_size
        self.batch_sampler = EpochBatchSampler(len(dataset), batch_size, shuffle, seed, drop_last)
        self.num_workers, self.pin_memory, self.persistent_workers = num_workers, pin_memory, persistent_workers
        self._loader: DataLoader | None = None

    def _dataloader(self) -> DataLoader:
        if self._loader is None:
            self._loader = DataLoader(
                self.dataset, batch_sampler=self.batch_sampler, num_workers=self.num_workers,
                pin_memory=self.pin_memory, persistent_workers=self.persistent_workers,
                worker_init_fn=seed_worker if self.num_workers else None,
                generator=torch.Generator().manual_seed(self.batch_sampler.seed),  # the workers' torch seeds
            )
        return self._loader

    @property
    def transform(self):
        return self.dataset.transform

    def set_transform(self, transform) -> None:
        """Use ``transform`` from the next epoch on."""
        self.dataset.transform = transform
        self._loader = None  # dropping the DataLoader shuts its persistent workers down

    @property
    def epoch(self) -> int:
        """How many epochs this loader has started (the next one drawn is this number)."""
        return self.batch_sampler.epoch

    def __len__(self) -> int:
        return len(self.batch_sampler)

    def __iter__(self):
        return iter(self._dataloader())

    def rows(self) -> np.ndarray:
        """The rows this rank yields next epoch, in order (all rows in one process; ``-1`` marks padding)."""
        return distributed.rows_of_batches(self.batch_sampler.batches(self.batch_sampler.epoch))


def image_loader(
    items: ImageItems, transform, batch_size: int = 64, shuffle: bool = False, num_workers: int | None = None,
    seed: int | None = None, target_dtype=None, drop_last: bool = False, device=None,
) -> ImageLoader:
    """A seeded loader of ``(images, target)`` (or ``(images,)`` without labels) batches for a model on ``device``.

    The same ``seed`` gives byte-identical batches, epoch after epoch, whatever ``num_workers``: the order comes
    from (seed, epoch) and each image's augmentation from (seed, epoch, row). Workers, pinned memory and
    persistent workers follow :func:`loader_settings` unless ``num_workers`` is given. Under torchrun
    ``batch_size`` is the global batch and each rank loads every world-th row of it (as ``TensorLoader``), so
    N processes train on the batches one process would.
    """
    settings = loader_settings(device, num_workers)
    dataset = ImageDataset(items, transform, target_dtype, seed=_base_seed(seed, shuffle))
    return ImageLoader(dataset, batch_size, shuffle, dataset.seed, drop_last, **settings)


class DeviceImageLoader:
    """Small images (28x28 digits) held on the device as one uint8 tensor and augmented there, a batch at a time
    (airbench's loader): no workers, no per-image Python, a few kernels per batch.

    ``augment=True`` moves each image by a random affine map (rotation up to ``rotate`` degrees, zoom in ``scale``,
    shift up to ``translate`` of the side; no flips: a mirrored 2 is not a 2) through ``affine_grid`` /
    ``grid_sample``, then normalizes with ``mean`` / ``std`` as ``digit_train_tfms`` does. Every image's map and the
    epoch's order are drawn from (seed, epoch) on the CPU, so CPU and GPU, one process and N, see the same batches.
    Yields ``((x,), y)`` (``((x,),)`` without labels) like :func:`image_loader`, already on ``device``.
    """

    def __init__(self, items: ImageItems, batch_size: int = 512, shuffle: bool = False, seed: int | None = None,
                 device=None, augment: bool = False, rotate: float = 12.0, scale: tuple[float, float] = (0.9, 1.1),
                 translate: float = 0.1, mean: Sequence[float] = (0.1307,), std: Sequence[float] = (0.3081,),
                 drop_last: bool = False, target_dtype=None):
        if items.pixels is None:
            raise ValueError("DeviceImageLoader holds pixel arrays (from_pixels); for image files use image_loader")
        self.device = torch.device(device) if device is not None else torch.device(
            "cuda" if torch.cuda.is_available() else "cpu")
        pixels = torch.as_tensor(np.asarray(items.pixels, dtype=np.uint8))
        pixels = pixels[:, None] if pixels.ndim == 3 else pixels.permute(0, 3, 1, 2)  # (n, C, H, W)
        self.images = pixels.contiguous().to(self.device)
        self.targets = None if items.labels is None else torch.as_tensor(items.labels, dtype=target_dtype).to(self.device)
        channels = self.images.shape[1]
        if len(mean) != channels or len(std) != channels:
            raise ValueError(f"{channels}-channel images need {channels} mean and std values, got {mean} and {std}")
        self.mean = torch.tensor(mean, dtype=torch.float32, device=self.device).view(1, -1, 1, 1)
        self.std = torch.tensor(std, dtype=torch.float32, device=self.device).view(1, -1, 1, 1)
        self.augment, self.rotate, self.scale, self.translate = augment, rotate, scale, translate
        self.batch_size, self.shuffle, self.drop_last = batch_size, shuffle, drop_last
        self.seed = _base_seed(seed, shuffle)
        self.epoch = 0

    def __len__(self) -> int:
        n = len(self.images)
        return n_batches(n, self.batch_size, self.drop_last)

    def _batches(self, epoch: int) -> list[np.ndarray]:
        return epoch_batches(len(self.images), self.batch_size, self.shuffle, self.seed, epoch, self.drop_last)

    def rows(self) -> np.ndarray:
        """The rows this rank yields next epoch, in order (``-1`` marks padding)."""
        return distributed.rows_of_batches(self._batches(self.epoch))

    def affine_maps(self, epoch: int) -> torch.Tensor:
        """(n, 2, 3) maps from output to input coordinates, one per image, drawn from (seed, epoch)."""
        g = torch.Generator().manual_seed(int(seed_sequence(self.seed, epoch, 1).generate_state(1, np.uint64)[0] >> 1))
        u = torch.rand(len(self.images), 4, generator=g, dtype=torch.float64)
        angle = torch.deg2rad((2 * u[:, 0] - 1) * self.rotate)
        zoom = self.scale[0] + (self.scale[1] - self.scale[0]) * u[:, 1]
        shift = (2 * u[:, 2:] - 1) * self.translate * 2  # grid coordinates span 2 per side
        cos, sin = torch.cos(angle) / zoom, torch.sin(angle) / zoom
        maps = torch.stack([torch.stack([cos, -sin, shift[:, 0]], 1), torch.stack([sin, cos, shift[:, 1]], 1)], 1)
        return maps.float()

    def __iter__(self):
        epoch, self.epoch = self.epoch, self.epoch + 1
        maps = self.affine_maps(epoch).to(self.device) if self.augment else None
        for batch in self._batches(epoch):
            share, _ = distributed.batch_share(batch)
            idx = torch.as_tensor(share, device=self.device)
            x = self.images[idx].float().div_(255)
            if maps is not None:
                grid = F.affine_grid(maps[idx], list(x.shape), align_corners=False)
                x = F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
            x = (x - self.mean) / self.std
            yield ((x,),) if self.targets is None else ((x,), self.targets[idx])
