"""From DataFrames to a trained entity-embedding Learner: loaders, the learner with fast.ai's Rossmann defaults, predictions.

``tabular_learner`` is the one call a notebook needs after fitting a :class:`TabularProcessor`.
"""
from __future__ import annotations

import math
from typing import Sequence

import numpy as np
import pandas as pd

from kitbox.training.sampling import TensorLoader
from kitbox.training.learner import Learner
from kitbox.metrics import Metric, rmspe
from kitbox.tabular.model import TabularModel
from kitbox.tabular.processor import TabularProcessor
from kitbox.training.tasks import Task

# RMSPE of the sales when the network predicts log(sales): the metric Rossmann-like competitions are scored on
RMSPE_OF_LOG = Metric("rmspe", lambda y_log, p_log: rmspe(np.exp(y_log), np.exp(p_log)), greater_is_better=False)


def tabular_loaders(processor: TabularProcessor, train_df: pd.DataFrame, y_train,
                    valid_df: pd.DataFrame | None = None, y_valid=None, batch_size: int = 512,
                    seed: int | None = None) -> tuple[TensorLoader, TensorLoader | None]:
    """Shuffled training batches and ordered validation batches (twice the batch size: no gradients to keep)."""
    train = TensorLoader(*processor.tensors(train_df, y_train), batch_size=batch_size, shuffle=True,
                         drop_last=len(train_df) > batch_size,  # a 1-row last batch would break BatchNorm
                         seed=seed)
    valid = None
    if valid_df is not None and len(valid_df):
        valid = TensorLoader(*processor.tensors(valid_df, y_valid), batch_size=2 * batch_size)
    return train, valid


def prediction_loader(processor: TabularProcessor, df: pd.DataFrame, batch_size: int = 1024) -> TensorLoader:
    return TensorLoader(*processor.tensors(df), batch_size=batch_size, has_target=False)


def log_y_range(y_log, headroom: float = 1.2) -> tuple[float, float]:
    """fast.ai's y_range for a log target: from 0 to ``headroom`` times the largest training value."""
    return 0.0, float(np.max(y_log)) * headroom


def tabular_learner(processor: TabularProcessor, train_loader, valid_loader=None, task: Task | None = None,
                    layers: Sequence[int] = (1000, 500), ps: Sequence[float] = (0.001, 0.01), emb_drop: float = 0.04,
                    emb_widths=None, wd: float = 0.2, metrics=(), seed: int | None = None, **learner_kwargs) -> Learner:
    """An entity-embedding MLP sized from the processor, wrapped in a Learner (defaults: fast.ai's Rossmann notebook)."""
    task = task or Task("regression")
    if seed is not None:  # the model's initial weights depend on the seed too, not only the batches
        import torch

        torch.manual_seed(seed)
    model = TabularModel(processor.cardinalities, len(processor.cont_names), n_out=task.n_out, layers=layers, ps=ps,
                         emb_drop=emb_drop, emb_widths=emb_widths)
    if task.kind == "regression" and getattr(train_loader, "has_target", False):
        start_at_mean(model, task, train_loader.tensors[-1])
    return Learner(model, train_loader, valid_loader, task=task, metrics=metrics, wd=wd, seed=seed, **learner_kwargs)


def start_at_mean(model: TabularModel, task: Task, y) -> None:
    """Set the head's bias so the first predictions are the target's mean: with a y_range sigmoid the net otherwise
    starts mid-range (far from typical log sales) and spends its first hundreds of steps only moving there."""
    import torch

    mean = float(torch.as_tensor(y, dtype=torch.float64).mean())
    if task.y_range is not None:
        lo, hi = task.y_range
        frac = min(max((mean - lo) / (hi - lo), 1e-4), 1 - 1e-4)
        mean = float(np.log(frac / (1 - frac)))  # the sigmoid's inverse
    with torch.no_grad():
        model.head.bias.fill_(mean)


def auto_epochs(n_rows: int, batch_size: int, base_epochs: int = 5, min_steps: int = 600, max_epochs: int = 20) -> int:
    """Epochs for a dataset: ``base_epochs`` when that already makes ``min_steps`` optimizer steps, more for small
    data (a few thousand rows need more passes to converge), never more than ``max_epochs``."""
    steps_per_epoch = max(1, n_rows // batch_size)
    return int(min(max_epochs, max(base_epochs, math.ceil(min_steps / steps_per_epoch))))


def auto_batch_size(n_rows: int, full_rows: int = 400_000) -> int:
    """512 (fast.ai's Rossmann batch); 1024 from ``full_rows`` rows (the same epochs in fewer, cheaper steps); for
    tables under 16k rows smaller batches, so that an epoch still makes 32 steps (never under 32 rows)."""
    if n_rows >= full_rows:
        return 1024
    return int(min(512, max(32, 2 ** math.floor(math.log2(max(n_rows, 2) / 32)))))


def auto_layers(n_rows: int, layers: Sequence[int] = (1000, 500), full_rows: int = 400_000,
                min_width: int = 64) -> tuple[int, ...]:
    """Hidden widths for a dataset: ``layers`` from ``full_rows`` rows up, narrower (by sqrt of the row ratio) below,
    so a demo-sized table trains in seconds instead of fitting a million-row network to a few thousand rows."""
    scale = min(1.0, (n_rows / full_rows) ** 0.5)
    return tuple(max(min_width, int(round(w * scale))) for w in layers)
