"""Backbone features computed once and cached: fastai 0.7's ``precompute=True`` for the frozen phase.

While the backbone is frozen its output never changes, so the head can train on stored pooled features: on a CPU
that turns the frozen phase from minutes of convolutions per epoch into a second. Features are computed where the
model lives (fp16 autocast on CUDA) and cached on disk per (kitbox version, model, weights, pipeline settings,
images), so every fold of a CV run, and a rerun, reuses them.
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

import kitbox
from kitbox.io.runs import one_time_work
from kitbox.training import distributed
from kitbox.vision.data import ImageItems, image_loader
from kitbox.vision.models import model_device, pooled_features, work_device
from kitbox.vision.transforms import describe_transform


def _fingerprint(model: nn.Module, items: ImageItems, transform, view: str) -> str:
    h = hashlib.sha1()
    h.update(f"kitbox {kitbox.__version__}".encode())  # a new version may compute features differently
    h.update(type(model).__name__.encode())
    h.update(str(getattr(model, "pretrained_cfg", {}).get("architecture", "")).encode())
    weights = getattr(model, "weights_file", None)
    if weights and Path(weights).is_file():
        st = Path(weights).stat()
        h.update(f"{weights}:{st.st_size}:{st.st_mtime_ns}".encode())
    h.update(view.encode())
    h.update(describe_transform(transform).encode())  # the view's name alone would miss a changed size or norm
    if items.paths is not None:
        for p in items.paths:
            h.update(str(p).encode())
    else:
        h.update(np.ascontiguousarray(items.pixels).tobytes())
    return h.hexdigest()[:16]


@torch.no_grad()
def compute_features(
    model: nn.Module, items: ImageItems, transform, batch_size: int = 64, num_workers: int | None = None,
    device: str | torch.device | None = None, desc: str = "features",
) -> torch.Tensor:
    """Pooled backbone features (n, n_features), float32 on the CPU, of every item seen through ``transform``, in
    item order (under torchrun the ranks share the work and each gets every row).

    Computed on ``device``, by default where the model is or, for a model still on the CPU, the GPU when there is
    one (:func:`kitbox.vision.models.work_device`), with fp16 autocast on CUDA; the model goes back where it was
    afterwards. The loader's workers follow :func:`kitbox.vision.data.loader_settings` for that device unless
    ``num_workers`` is given.
    """
    device = torch.device(device) if device is not None else work_device(model)
    home, was_training = model_device(model), model.training
    model.eval().to(device)
    loader = image_loader(items, transform, batch_size=batch_size, num_workers=num_workers, device=device)
    out = []
    start = time.perf_counter()
    bar = tqdm(loader, desc=desc, leave=False)
    for batch in bar:
        x = batch[0].to(device, non_blocking=True)
        with torch.autocast(device.type, dtype=torch.float16, enabled=device.type == "cuda"):
            out.append(pooled_features(model, x).float().cpu())
        bar.set_postfix(img_s=f"{sum(len(o) for o in out) / (time.perf_counter() - start):.0f}")
    model.train(was_training).to(home)
    feats = torch.cat(out) if out else torch.empty(0)
    if distributed.is_distributed():  # under torchrun each rank computed its share: every rank gets all rows
        (gathered,) = distributed.gather_in_row_order(loader.rows(), feats.numpy())
        feats = torch.from_numpy(gathered)
    return feats


def cached_features(
    model: nn.Module, items: ImageItems, transform, cache_dir: Path | None, view: str, **kwargs,
) -> torch.Tensor:
    """:func:`compute_features`, stored in ``cache_dir`` (atomically) and loaded from there next time.

    ``view`` names the transform in the file name (e.g. ``"valid224"``, ``"flip224"``); the cache key holds the
    kitbox version, the model, its weights file, the pipeline's settings and the images, so a changed input never
    reuses stale features.
    """
    if cache_dir is None:
        return compute_features(model, items, transform, desc=f"features {view}", **kwargs)
    cache_dir = Path(cache_dir)
    cache_dir.mkdir(parents=True, exist_ok=True)
    path = cache_dir / f"features-{view}-{_fingerprint(model, items, transform, view)}.pt"
    if path.exists():
        return torch.load(path, weights_only=True)  # a plain tensor: never unpickle code
    with one_time_work():
        feats = compute_features(model, items, transform, desc=f"features {view}", **kwargs)
    tmp = path.with_suffix(f".tmp{os.getpid()}")
    torch.save(feats, tmp)
    os.replace(tmp, path)  # atomic: a fold running in parallel never reads half a file
    return feats
