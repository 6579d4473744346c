"""Image datasets: items (file paths or pixel arrays + labels) from the four usual Kaggle layouts, checked up front.

Every constructor returns :class:`ImageItems`; unreadable images are found by :func:`check_images` before any
DataLoader worker starts, reported by file name, and skipped (with a count) or raised, as the caller chooses.
"""
from __future__ import annotations

import re
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import cv2
import numpy as np
import pandas as pd
import torch
from PIL import Image
from torch.utils.data import DataLoader, Dataset

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")


class UnreadableImageError(ValueError):
    """Raised when ``on_error="raise"`` and some images cannot be decoded."""


@dataclass
class ImageItems:
    """What a dataset holds: ``paths`` (files) or ``pixels`` (uint8 array n x H x W [x C]), plus optional labels.

    ``labels`` are class indices (n,), 0/1 rows (n, k) for multi-label, or None for test images;
    ``classes`` names the label values; ``ids`` are what the submission calls each image.
    """

    paths: list[Path] | None = None
    pixels: np.ndarray | None = None
    labels: np.ndarray | None = None
    classes: list[str] = field(default_factory=list)
    ids: list | None = None
    skipped: list[str] = field(default_factory=list)  # file names dropped by check_images

    def __len__(self) -> int:
        return len(self.paths) if self.paths is not None else len(self.pixels)

    def subset(self, idx) -> "ImageItems":
        idx = np.asarray(idx)
        return ImageItems(
            paths=[self.paths[i] for i in idx] if self.paths is not None else None,
            pixels=self.pixels[idx] if self.pixels is not None else None,
            labels=self.labels[idx] if self.labels is not None else None,
            classes=self.classes,
            ids=[self.ids[i] for i in idx] if self.ids is not None else None,
        )


def read_image(path: Path) -> np.ndarray:
    """An RGB uint8 array (H, W, 3); raises UnreadableImageError naming the file when it cannot be decoded."""
    image = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if image is None:
        raise UnreadableImageError(f"cannot decode image {path} (missing, empty, truncated or not an image)")
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


def _is_readable(path: Path) -> bool:
    # PIL raises on a truncated JPEG where OpenCV would quietly return a half-grey image; draft() decodes at
    # 1/8 scale so checking thousands of photos takes seconds.
    try:
        with Image.open(path) as image:
            image.draft("RGB", (image.width // 8 + 1, image.height // 8 + 1))
            image.load()
        return True
    except (OSError, ValueError, Image.DecompressionBombError):
        return False


def check_images(items: ImageItems, on_error: str = "skip") -> ImageItems:
    """Decode every file once, before training: ``on_error="skip"`` drops unreadable ones with a warning naming
    them and a count (kept in ``items.skipped``), ``"raise"`` raises UnreadableImageError listing them."""
    if on_error not in ("skip", "raise"):
        raise ValueError(f"on_error must be 'skip' or 'raise', not {on_error!r}")
    if items.paths is None:
        return items
    ok = np.array([_is_readable(p) for p in items.paths], dtype=bool)
    if ok.all():
        return items
    bad = [p.name for p, good in zip(items.paths, ok) if not good]
    shown = ", ".join(bad[:10]) + (f" and {len(bad) - 10} more" if len(bad) > 10 else "")
    if on_error == "raise":
        raise UnreadableImageError(
            f"{len(bad)} of {len(ok)} images cannot be decoded: {shown}; remove or replace them, "
            "or pass on_error='skip' to train without them"
        )
    warnings.warn(f"skipped {len(bad)} unreadable images of {len(ok)}: {shown}", stacklevel=2)
    kept = items.subset(np.flatnonzero(ok))
    kept.skipped = bad
    return kept


def _image_files(folder: Path) -> list[Path]:
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"image folder {folder} does not exist")
    files = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise FileNotFoundError(f"no image files ({', '.join(IMAGE_SUFFIXES)}) in {folder}")
    return files


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
    paths, names = [], []
    for folder in folders:
        for f in _image_files(folder):
            paths.append(f)
            names.append(folder.name)
    labels, classes = _encode(names, classes)
    return check_images(ImageItems(paths=paths, labels=labels, classes=classes, ids=[p.stem for p in paths]), on_error)


def from_filenames(
    folder: Path, label_of: str | Callable[[str], str] = r"^([a-zA-Z]+)[._]", classes: Sequence[str] | None = None,
    on_error: str = "skip",
) -> ImageItems:
    """Labels inside file names, e.g. Dogs vs Cats' ``cat.12.jpg``: ``label_of`` is a regex whose first group is
    the label, or a function of the file name."""
    files = _image_files(folder)
    if isinstance(label_of, str):
        pattern = re.compile(label_of)

        def label_of(name, pattern=pattern):
            match = pattern.search(name)
            if match is None:
                raise ValueError(f"file name {name!r} does not match the label pattern {pattern.pattern!r}")
            return match.group(1)

    names = [label_of(f.name) for f in files]
    labels, classes = _encode(names, classes)
    return check_images(ImageItems(paths=files, labels=labels, classes=classes, ids=[f.stem for f in files]), on_error)


def from_unlabelled(folder: Path, on_error: str = "skip") -> ImageItems:
    """Test images: every image in a folder, ids are the file stems (``test/123.jpg`` -> ``"123"``)."""
    files = _image_files(folder)
    return check_images(ImageItems(paths=files, ids=[f.stem for f in files]), on_error)


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


class ImageDataset(Dataset):
    """Items through an albumentations pipeline to (C, H, W) float tensors; ``transform`` may be swapped between
    epochs (progressive resizing) because workers are re-created every epoch."""

    def __init__(self, items: ImageItems, transform, target_dtype=None):
        self.items, self.transform = items, transform
        labels = items.labels
        self.targets = None if labels is None else torch.as_tensor(labels, dtype=target_dtype)

    def __len__(self) -> int:
        return len(self.items)

    def image(self, i: int) -> np.ndarray:
        if self.items.paths is not None:
            return read_image(self.items.paths[i])
        return self.items.pixels[i]

    def __getitem__(self, i: int):
        image = self.transform(image=self.image(i))["image"]
        if image.ndim == 2:  # grey pixels: one channel
            image = image[:, :, None]
        x = torch.from_numpy(np.ascontiguousarray(image.transpose(2, 0, 1)))
        return (x,) if self.targets is None else (x, self.targets[i])


def image_loader(
    items: ImageItems, transform, batch_size: int = 64, shuffle: bool = False, num_workers: int = 0,
    seed: int | None = None, target_dtype=None, drop_last: bool = False,
) -> DataLoader:
    """A DataLoader of ``(images, target)`` (or ``(images,)`` without labels) batches.

    ``num_workers=0`` decodes in the training process; worth more only when the speed report shows the
    loader, not the model step, is the bottleneck (see :class:`kitbox.vision.speed.SpeedReport`).
    """
    generator = torch.Generator().manual_seed(seed) if seed is not None else None
    return DataLoader(
        ImageDataset(items, transform, target_dtype), batch_size=batch_size, shuffle=shuffle, drop_last=drop_last,
        num_workers=num_workers, generator=generator, persistent_workers=False,
    )
