"""albumentations pipelines for training, validation and test-time augmentation (TTA).

Normalization comes from the backbone's ``pretrained_cfg`` (mean, std, crop_pct), so a pipeline always matches
the weights it feeds. ``tta_tfms(size, n)`` returns n augmented pipelines; TTA itself is in ``kitbox.vision.tta``.
A pipeline's ``seed`` fixes its draws when called directly; inside ``image_loader`` every image is reseeded from the
loader's seed (mixed with the pipeline's own), so the loader's seed decides what a run sees.
"""
from __future__ import annotations

import json
from dataclasses import dataclass

import albumentations as A
import cv2

IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class Norm:
    """What a backbone expects: per-channel mean/std on 0..1 pixels and the centre-crop fraction."""

    mean: tuple[float, ...] = IMAGENET_MEAN
    std: tuple[float, ...] = IMAGENET_STD
    crop_pct: float = 0.875


def norm_of(model) -> Norm:
    """The normalization a timm model was pretrained with (ImageNet's when the model does not say)."""
    cfg = getattr(model, "pretrained_cfg", None) or {}
    return Norm(
        tuple(cfg.get("mean", IMAGENET_MEAN)), tuple(cfg.get("std", IMAGENET_STD)), float(cfg.get("crop_pct", 0.875))
    )


def _resize_side(size: int, norm: Norm) -> int:
    # fastai/timm's convention: resize the short side to size / crop_pct, then centre-crop `size`.
    return int(round(size / norm.crop_pct))


def train_tfms(size: int, norm: Norm = Norm(), flip: bool = True, scale=(0.35, 1.0), jitter: float = 0.2,
               seed: int | None = None) -> A.Compose:
    """Random resized crop, horizontal flip, light affine and colour jitter, normalize (photos)."""
    return A.Compose([
        A.RandomResizedCrop(size=(size, size), scale=scale, interpolation=cv2.INTER_AREA),
        A.HorizontalFlip(p=0.5 if flip else 0.0),
        A.Affine(rotate=(-10, 10), scale=(0.95, 1.05), border_mode=cv2.BORDER_REFLECT_101, p=0.3),
        A.ColorJitter(brightness=jitter, contrast=jitter, saturation=jitter, hue=0.02, p=0.5),
        A.Normalize(mean=norm.mean, std=norm.std),
    ], seed=seed)


def valid_tfms(size: int, norm: Norm = Norm()) -> A.Compose:
    """Resize the short side, centre crop, normalize: the plain (no TTA) view."""
    return A.Compose([
        A.SmallestMaxSize(max_size=_resize_side(size, norm), interpolation=cv2.INTER_AREA),
        A.CenterCrop(height=size, width=size),
        A.Normalize(mean=norm.mean, std=norm.std),
    ])


def flip_tfms(size: int, norm: Norm = Norm()) -> A.Compose:
    """The plain view mirrored: the cheapest TTA pass, deterministic so it can be cached."""
    return A.Compose([
        A.SmallestMaxSize(max_size=_resize_side(size, norm), interpolation=cv2.INTER_AREA),
        A.CenterCrop(height=size, width=size),
        A.HorizontalFlip(p=1.0),
        A.Normalize(mean=norm.mean, std=norm.std),
    ])


def tta_tfms(size: int, norm: Norm = Norm(), n: int = 4, flip: bool = True, seed: int = 0) -> list[A.Compose]:
    """n augmented views for TTA: mirrored, then zoomed random crops (fastai's TTA: flips plus crops/zoom).

    Each pipeline is seeded, so a TTA pass gives the same views every time it is run.
    """
    views = []
    for k in range(n):
        if k == 0 and flip:
            views.append(flip_tfms(size, norm))
            continue
        views.append(A.Compose([
            A.SmallestMaxSize(max_size=int(round(size / 0.8)), interpolation=cv2.INTER_AREA),
            A.RandomCrop(height=size, width=size),
            A.HorizontalFlip(p=0.5 if flip else 0.0),
            A.Normalize(mean=norm.mean, std=norm.std),
        ], seed=seed + k))
    return views


def digit_train_tfms(size: int = 28, mean: float = 0.1307, std: float = 0.3081, seed: int | None = None) -> A.Compose:
    """Small shifts, rotations and zooms for hand-written digits (no flips: a mirrored 2 is not a 2)."""
    return A.Compose([
        A.Affine(translate_percent=(-0.1, 0.1), rotate=(-12, 12), scale=(0.9, 1.1), shear=(-8, 8),
                 border_mode=cv2.BORDER_CONSTANT, fill=0, p=0.9),
        A.Resize(size, size) if size != 28 else A.NoOp(),
        A.Normalize(mean=(mean,), std=(std,)),
    ], seed=seed)


def digit_valid_tfms(size: int = 28, mean: float = 0.1307, std: float = 0.3081) -> A.Compose:
    return A.Compose([A.Resize(size, size) if size != 28 else A.NoOp(), A.Normalize(mean=(mean,), std=(std,))])


def digit_tta_tfms(size: int = 28, n: int = 4, seed: int = 0, **norm) -> list[A.Compose]:
    """Slightly shifted / rotated views of a digit, seeded so TTA is repeatable."""
    return [A.Compose([
        A.Affine(translate_percent=(-0.05, 0.05), rotate=(-6, 6), scale=(0.95, 1.05), border_mode=cv2.BORDER_CONSTANT,
                 fill=0, p=1.0),
        A.Resize(size, size) if size != 28 else A.NoOp(),
        A.Normalize(mean=(norm.get("mean", 0.1307),), std=(norm.get("std", 0.3081),)),
    ], seed=seed + k) for k in range(n)]


def describe_transform(transform) -> str:
    """A pipeline's settings as text (albumentations' own serialization, with its version), for cache keys: two
    pipelines with the same description compute the same thing."""
    try:
        return json.dumps(A.to_dict(transform), sort_keys=True, default=str)
    except (AttributeError, NotImplementedError, TypeError, ValueError):  # not an albumentations pipeline
        text = repr(transform)
        if " at 0x" in text:  # a function or an object without its own repr: its name is all that is stable
            kind = transform if callable(transform) and hasattr(transform, "__qualname__") else type(transform)
            text = f"{kind.__module__}.{kind.__qualname__}"
        return text
