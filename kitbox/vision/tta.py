"""Test-time augmentation on the Learner's device, and progressive resizing as one call.

TTA predicts the plain view plus n augmented views and blends them fastai's way:
``beta * plain + (1 - beta) * mean(augmented)``. Progressive resizing continues the *same* Learner (weights,
optimizer state, layer groups) at a larger image size by swapping the loaders' transforms.
"""
from __future__ import annotations

from typing import Callable

import numpy as np
from torch.utils.data import DataLoader

from kitbox.vision.data import ImageItems, ImageLoader, image_loader


def tta_loaders(items: ImageItems, plain_tfm, aug_tfms: list, batch_size: int = 64, num_workers: int | None = None,
                seed: int = 0, device=None) -> list[ImageLoader]:
    """One loader per view, the plain one first (the order :func:`blend` expects). View k is seeded
    ``seed + k``: two copies of one random pipeline still give two different views, the same ones every run."""
    return [image_loader(items, tfm, batch_size=batch_size, num_workers=num_workers, seed=seed + k, device=device)
            for k, tfm in enumerate([plain_tfm, *aug_tfms])]


def blend(passes: list[np.ndarray], beta: float | None = 0.4) -> np.ndarray:
    """fastai's blend of a plain pass (first) with augmented passes; ``beta=None`` is the plain mean of all."""
    if beta is None or len(passes) == 1:
        return np.mean(passes, axis=0)
    return beta * passes[0] + (1 - beta) * np.mean(passes[1:], axis=0)


def predict_tta(learn, items: ImageItems, plain_tfm, aug_tfms: list, beta: float | None = 0.4,
                batch_size: int = 64, num_workers: int | None = None, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """``(tta, plain)`` predictions for ``items``: the plain pass is returned too, so a run can report the metric
    with and without TTA at no extra cost. The loaders are set up for the Learner's device (workers and pinned
    memory on CUDA); under torchrun each rank predicts its share and every rank gets all rows in order."""
    loaders = tta_loaders(items, plain_tfm, aug_tfms, batch_size, num_workers, seed, device=learn.device)
    passes = [learn.predict(loader) for loader in loaders]
    return blend(passes, beta), passes[0]


def set_transforms(loader, transform) -> None:
    """Swap the albumentations pipeline of an :func:`image_loader` from the next epoch on (persistent workers
    included: the loader restarts them with the new pipeline)."""
    if isinstance(loader, ImageLoader):
        loader.set_transform(transform)
        return
    dataset = getattr(loader, "dataset", None)
    if not isinstance(loader, DataLoader) or not hasattr(dataset, "transform"):
        raise TypeError(f"set_transforms needs a loader made by kitbox.vision.image_loader, got {type(loader).__name__}")
    if loader.persistent_workers:
        raise ValueError("this DataLoader's persistent workers keep their own copy of the old pipeline: build it "
                         "with kitbox.vision.image_loader, whose loaders pass a new pipeline on to their workers")
    dataset.transform = transform  # workers are re-created each epoch and copy the dataset anew


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
