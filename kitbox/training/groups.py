"""Layer groups for discriminative learning rates and freezing.

A model is split into ordered groups, from the input side (stem) to the output side (head):
- a model with a ``layer_groups()`` method declares its own (kitbox's tabular, text and vision models do);
- a timm model is split by its own ``group_matcher`` into stem, each stage, and the head;
- anything else is one group.
``lr`` values are spread over the groups by :func:`spread_lr`.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
from torch import nn


def _params_of(item) -> list[nn.Parameter]:
    if isinstance(item, nn.Module):
        return list(item.parameters())
    if isinstance(item, nn.Parameter):
        return [item]
    return [p for sub in item for p in _params_of(sub)]


def timm_groups(model: nn.Module) -> list[list[nn.Parameter]]:
    """Split a timm model with its ``group_matcher(coarse=True)``: stem, one group per stage, then the head.

    Parameters the matcher leaves out (timm puts them last) end up in the head group, which is what a fresh
    classifier should be: the one group trained while the rest is frozen.
    """
    from timm.models import group_parameters

    named = dict(model.named_parameters())
    grouped = group_parameters(model, model.group_matcher(coarse=True))
    return [[named[name] for name in names] for _, names in sorted(grouped.items())]


def layer_groups(model: nn.Module) -> list[list[nn.Parameter]]:
    """The model's ordered parameter groups (each parameter in exactly one group, first group wins for tied weights)."""
    if hasattr(model, "layer_groups"):
        raw = [_params_of(g) for g in model.layer_groups()]
    elif hasattr(model, "group_matcher"):
        raw = timm_groups(model)
    else:
        raw = [list(model.parameters())]
    seen: set[int] = set()
    groups = []
    for group in raw:
        unique = [p for p in group if id(p) not in seen]
        seen.update(id(p) for p in unique)
        groups.append(unique)
    missing = [n for n, p in model.named_parameters() if id(p) not in seen]
    if missing:
        raise ValueError(
            f"{type(model).__name__}.layer_groups() leaves out {len(missing)} parameters (e.g. {missing[:3]}); "
            "every parameter must belong to one group"
        )
    return [g for g in groups if g]


def spread_lr(lr, n_groups: int) -> list[float]:
    """One LR per group from a float, ``slice(hi)``, ``slice(lo, hi)`` or a list (fastai's conventions).

    - float: the same LR everywhere;
    - ``slice(hi)``: hi/10 for every group but the last, hi for the last;
    - ``slice(lo, hi)``: geometric from lo (first group) to hi (last group);
    - list/tuple: one value per group, checked.
    """
    if isinstance(lr, slice):
        if lr.step is not None:
            raise ValueError("an LR slice takes (lo, hi) or (hi), not a step")
        if lr.start is None:
            return [lr.stop / 10] * (n_groups - 1) + [lr.stop]
        if n_groups == 1:
            return [float(lr.stop)]
        return [float(v) for v in np.geomspace(lr.start, lr.stop, n_groups)]
    if isinstance(lr, Sequence) and not isinstance(lr, str):
        if len(lr) != n_groups:
            raise ValueError(f"got {len(lr)} learning rates for {n_groups} layer groups; give one per group or a slice")
        return [float(v) for v in lr]
    return [float(lr)] * n_groups
