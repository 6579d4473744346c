"""Which is the bottleneck, the image loader or the model step? Measure both on the same batches, separately.

``Learner`` already logs each epoch's share of time spent waiting for data; :func:`loader_vs_step` answers the
question before a long fit: images/s of decoding + augmenting alone, and of forward + backward + step alone.
"""
from __future__ import annotations

import itertools
import time

import torch


def _n_images(batch) -> int:
    x = batch[0]
    x = x[0] if isinstance(x, (tuple, list)) else x
    return len(x)


def loader_vs_step(learn, loader=None, n_batches: int = 5, warmup: int = 1) -> dict:
    """``{"loader_img_s", "step_img_s", "bottleneck", "suggestion"}`` over ``n_batches`` of ``loader`` (default:
    the Learner's training loader). The step is ``Learner.train_step``, so it runs as a fit would (autocast, loss
    scaling, clipping, callbacks); everything it changes is put back afterwards."""
    loader = learn.train_loader if loader is None else loader
    start = time.perf_counter()
    batches = list(itertools.islice(iter(loader), warmup + n_batches))
    load_s = time.perf_counter() - start
    n_loaded = sum(_n_images(b) for b in batches)
    if len(batches) <= warmup:
        raise ValueError(f"the loader gave {len(batches)} batches; need more than {warmup} to measure")
    step_s, n_stepped = 0.0, 0
    learn.model.train()
    with learn.preserving_state():  # measuring never trains the model: weights, optimizer and RNGs are put back
        for i, batch in enumerate(batches):
            t0 = time.perf_counter()
            # the Learner's own step (autocast, scaled backward, clipping, callbacks), stepping as its fits do
            learn.train_step(batch, stepping=(i + 1) % learn.accum_steps == 0)
            if learn.device.type == "cuda":
                torch.cuda.synchronize()
            if i >= warmup:  # the first step pays one-off costs (allocations, kernel choice)
                step_s += time.perf_counter() - t0
                n_stepped += _n_images(batch)
    loader_rate, step_rate = n_loaded / load_s, n_stepped / step_s
    bottleneck = "loader" if loader_rate < step_rate else "model step"
    suggestion = (
        "more DataLoader workers (num_workers), smaller stored images, or cheaper augmentation"
        if bottleneck == "loader" else "the loader keeps up; a smaller image size or model is what speeds this up"
    )
    return {"loader_img_s": loader_rate, "step_img_s": step_rate, "bottleneck": bottleneck, "suggestion": suggestion}
