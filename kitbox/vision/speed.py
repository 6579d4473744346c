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
    the Learner's training loader). The model's weights are restored afterwards: measuring never trains it."""
    loader = learn.train_loader if loader is None else loader
    start = time.perf_counter()
    batches = list(itertools.islice(iter(loader), warmup + n_batches))
    load_s = time.perf_counter() - start
    n_loaded = sum(_n_images(b) for b in batches)
    if len(batches) <= warmup:
        raise ValueError(f"the loader gave {len(batches)} batches; need more than {warmup} to measure")
    state = {k: v.detach().clone() for k, v in learn.model.state_dict().items()}
    opt_state = learn.opt.state_dict()
    learn.model.train()
    step_s, n_stepped = 0.0, 0
    for i, batch in enumerate(batches):
        t0 = time.perf_counter()
        inputs, target = learn._to_device(batch)
        loss = learn.task.loss(learn.model(*inputs), target)
        loss.backward()
        learn.opt.step()
        learn.opt.zero_grad(set_to_none=True)
        if learn.device.type == "cuda":
            torch.cuda.synchronize()
        if i >= warmup:  # the first step pays one-off costs (allocations, kernel choice)
            step_s += time.perf_counter() - t0
            n_stepped += _n_images(batch)
    learn.model.load_state_dict(state)
    learn.opt.load_state_dict(opt_state)
    loader_rate, step_rate = n_loaded / load_s, n_stepped / step_s
    bottleneck = "loader" if loader_rate < step_rate else "model step"
    suggestion = (
        "more DataLoader workers (num_workers), smaller stored images, or cheaper augmentation"
        if bottleneck == "loader" else "the loader keeps up; a smaller image size or model is what speeds this up"
    )
    return {"loader_img_s": loader_rate, "step_img_s": step_rate, "bottleneck": bottleneck, "suggestion": suggestion}
