"""Backbone features computed once and cached: fastai 0.7's ``precompute=True`` for the frozen phase.

While the backbone is frozen its output never changes, so the head can train on stored pooled features: on a CPU
that turns the frozen phase from minutes of convolutions per epoch into a second. Features are cached on disk per
(model, weights, view, images) so every fold of a CV run, and a rerun, reuses them.
"""
from __future__ import annotations

import hashlib
import os
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from kitbox.vision.data import ImageItems, image_loader
from kitbox.vision.models import pooled_features


def _fingerprint(model: nn.Module, items: ImageItems, view: str) -> str:
    h = hashlib.sha1()
    h.update(type(model).__name__.encode())
    h.update(str(getattr(model, "pretrained_cfg", {}).get("architecture", "")).encode())
    weights = getattr(model, "weights_file", None)
    if weights and Path(weights).is_file():
        st = Path(weights).stat()
        h.update(f"{weights}:{st.st_size}:{st.st_mtime_ns}".encode())
    h.update(view.encode())
    if items.paths is not None:
        for p in items.paths:
            h.update(str(p).encode())
    else:
        h.update(np.ascontiguousarray(items.pixels).tobytes())
    return h.hexdigest()[:16]


@torch.no_grad()
def compute_features(
    model: nn.Module, items: ImageItems, transform, batch_size: int = 64, num_workers: int = 0,
    device: str | torch.device = "cpu", desc: str = "features",
) -> torch.Tensor:
    """Pooled backbone features (n, n_features) of every item seen through ``transform``, in item order."""
    was_training = model.training
    model.eval().to(device)
    loader = image_loader(items, transform, batch_size=batch_size, num_workers=num_workers)
    out = []
    start = time.perf_counter()
    bar = tqdm(loader, desc=desc, leave=False)
    for batch in bar:
        x = batch[0].to(device)
        out.append(pooled_features(model, x).float().cpu())
        bar.set_postfix(img_s=f"{sum(len(o) for o in out) / (time.perf_counter() - start):.0f}")
    model.train(was_training)
    return torch.cat(out) if out else torch.empty(0)


def cached_features(
    model: nn.Module, items: ImageItems, transform, cache_dir: Path | None, view: str, **kwargs,
) -> torch.Tensor:
    """:func:`compute_features`, stored in ``cache_dir`` (atomically) and loaded from there next time.

    ``view`` names the transform (e.g. ``"valid224"``, ``"flip224"``): part of the cache key, with the model, its
    weights file and the images, so a changed input never reuses stale features.
    """
    if cache_dir is None:
        return compute_features(model, items, transform, desc=f"features {view}", **kwargs)
    cache_dir = Path(cache_dir)
    cache_dir.mkdir(parents=True, exist_ok=True)
    path = cache_dir / f"features-{view}-{_fingerprint(model, items, view)}.pt"
    if path.exists():
        return torch.load(path, weights_only=True)  # a plain tensor: never unpickle code
    feats = compute_features(model, items, transform, desc=f"features {view}", **kwargs)
    tmp = path.with_suffix(f".tmp{os.getpid()}")
    torch.save(feats, tmp)
    os.replace(tmp, path)  # atomic: a fold running in parallel never reads half a file
    return feats
