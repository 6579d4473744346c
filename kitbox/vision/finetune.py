"""The article's fine-tuning recipe for a pretrained CNN, as small steps a competition recipe strings together:

1. ``train_head``: backbone frozen, head trained on cached pooled features (``precompute=True``), LR from lr_find;
2. ``unfrozen_learner`` + ``fit_sgdr(..., slice(lr / 100, lr))``: every layer group trains, early layers slowest;
3. TTA (``kitbox.vision.tta``) on validation and test.
"""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from torch import nn

from kitbox.training.sampling import TensorLoader
from kitbox.training.learner import Learner
from kitbox.training.tasks import Task
from kitbox.vision.models import head_of, model_device


def _target_tensor(y: np.ndarray, task: Task) -> torch.Tensor:
    return torch.as_tensor(np.asarray(y), dtype=task.target_dtype)


def train_head(
    model: nn.Module, train_views: Sequence[torch.Tensor], y_train: np.ndarray, task: Task,
    valid_feats: torch.Tensor | None = None, y_valid: np.ndarray | None = None, epochs: int = 10,
    lr: float | None = None, batch_size: int = 64, metrics=(), seed: int = 42, run_dir: Path | None = None,
    progress: bool = True, device=None,
) -> tuple[Learner, float]:
    """Fit the model's head on cached features; returns the head Learner and the LR used.

    ``train_views`` holds one feature tensor per cached view of the training images (plain, mirrored...): stacking
    them is the augmentation a frozen phase can afford. ``lr=None`` runs lr_find and takes its valley.
    The head shares its parameters with ``model``, so the model is fine-tuned in place; it trains where the model
    is (``device`` overrides), so the backbone and its classifier never end up on different devices.
    """
    head = head_of(model)
    x = torch.cat(list(train_views))
    y = _target_tensor(np.concatenate([y_train] * len(train_views)), task)
    train = TensorLoader(x, y, batch_size=batch_size, shuffle=True, seed=seed)
    valid = None
    if valid_feats is not None and y_valid is not None:
        valid = TensorLoader(valid_feats, _target_tensor(y_valid, task), batch_size=1024)
    learn = Learner(head, train, valid, task=task, metrics=metrics, seed=seed, run_dir=run_dir, progress=progress,
                    groups=[list(head.parameters())], device=device if device is not None else model_device(model))
    if lr is None:
        lr = float(learn.lr_find(start_lr=1e-5, end_lr=1.0, num_it=min(100, 5 * len(train))).valley)
    learn.fit_one_cycle(epochs, lr)
    return learn, lr


@torch.no_grad()
def head_predict(model: nn.Module, feats: torch.Tensor, task: Task, batch_size: int = 1024) -> np.ndarray:
    """Decoded predictions of the model's head on cached features (eval mode: dropout off), on the model's device."""
    head = head_of(model).eval()
    device = model_device(model)
    out = [task.decode(head(feats[i:i + batch_size].to(device))).cpu() for i in range(0, len(feats), batch_size)]
    return torch.cat(out).numpy()


def unfrozen_learner(model: nn.Module, train_loader, valid_loader, task: Task, metrics=(), seed: int = 42,
                     run_dir: Path | None = None, progress: bool = True, **kwargs) -> Learner:
    """A Learner over the whole model, every layer group trainable (the phase after the head is fitted)."""
    learn = Learner(model, train_loader, valid_loader, task=task, metrics=metrics, seed=seed, run_dir=run_dir,
                    progress=progress, **kwargs)
    learn.unfreeze()
    return learn


def clip_probs(p: np.ndarray, eps: float = 0.005) -> np.ndarray:
    """Keep probabilities away from 0 and 1: one confident mistake costs log(1/eps) (about 5.3 at 0.005) instead
    of 34.5 at log loss's own 1e-15, while a right answer loses only -log(1 - eps), about 0.005."""
    return np.clip(p, eps, 1 - eps)
