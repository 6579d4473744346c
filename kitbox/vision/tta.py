"""Test-time augmentation on top of ``Learner.predict_passes``, and progressive resizing as one call.

TTA predicts the plain view plus n augmented views and blends them fastai's way:
``beta * plain + (1 - beta) * mean(augmented)``. Progressive resizing continues the *same* Learner (weights,
optimizer state, layer groups) at a larger image size by swapping the loaders' transforms.
"""
from __future__ import annotations

from typing import Callable

import numpy as np
from torch.utils.data import DataLoader

from kitbox.vision.data import ImageItems, image_loader


def tta_loaders(items: ImageItems, plain_tfm, aug_tfms: list, batch_size: int = 64, num_workers: int = 0) -> list:
    """One loader per view, the plain one first (the order ``Learner.predict_passes`` expects)."""
    return [image_loader(items, tfm, batch_size=batch_size, num_workers=num_workers) for tfm in [plain_tfm, *aug_tfms]]


def blend(passes: list[np.ndarray], beta: float | None = 0.4) -> np.ndarray:
    """fastai's blend of a plain pass (first) with augmented passes; ``beta=None`` is the plain mean of all."""
    if beta is None or len(passes) == 1:
        return np.mean(passes, axis=0)
    return beta * passes[0] + (1 - beta) * np.mean(passes[1:], axis=0)


def predict_tta(learn, items: ImageItems, plain_tfm, aug_tfms: list, beta: float | None = 0.4,
                batch_size: int = 64, num_workers: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """``(tta, plain)`` predictions for ``items``: the plain pass is returned too, so a run can report the metric
    with and without TTA at no extra cost."""
    loaders = tta_loaders(items, plain_tfm, aug_tfms, batch_size, num_workers)
    passes = [learn.predict(loader) for loader in loaders]
    return blend(passes, beta), passes[0]


def set_transforms(loader, transform) -> None:
    """Swap the albumentations pipeline of an :func:`image_loader`; takes effect at the next epoch (workers are
    not persistent, so each epoch's workers pick up the new pipeline)."""
    dataset = getattr(loader, "dataset", None)
    if not isinstance(loader, DataLoader) or not hasattr(dataset, "transform"):
        raise TypeError(f"set_transforms needs a loader made by kitbox.vision.image_loader, got {type(loader).__name__}")
    dataset.transform = transform


def resize_and_fit(learn, size: int, train_tfm: Callable[[int], object], valid_tfm: Callable[[int], object],
                   fit: Callable[[object], None]) -> None:
    """Progressive resizing in one call: switch the Learner's loaders to ``size`` and keep training.

    ``train_tfm(size)`` / ``valid_tfm(size)`` build the pipelines (e.g. ``partial(train_tfms, norm=norm)``); ``fit``
    is the schedule to run, e.g. ``lambda learn: learn.fit_sgdr(2, 1, slice(lr / 100, lr))``. The model is not
    rebuilt: convolutional backbones with global pooling accept any input size.
    """
    set_transforms(learn.train_loader, train_tfm(size))
    if learn.valid_loader is not None:
        set_transforms(learn.valid_loader, valid_tfm(size))
    fit(learn)
