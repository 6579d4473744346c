"""The entity-embedding network (Guo & Berkhahn 2016, as in fast.ai's tabular model) and embedding export.

One embedding per categorical column, concatenated with batch-normalized continuous columns, then
Linear-ReLU-BatchNorm-Dropout blocks and a linear head. The head's raw output goes to a kitbox ``Task``:
``Task("regression", y_range=(lo, hi))`` applies the scaled sigmoid, so the model itself stays task-agnostic.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd
import torch
from torch import nn

from kitbox.io.runs import atomic_write_text


def embedding_width(n_categories: int) -> int:
    """fast.ai's rule of thumb for an embedding's width: ``min(600, round(1.6 * n ** 0.56))``."""
    return int(min(600, round(1.6 * n_categories ** 0.56)))


class TabularModel(nn.Module):
    """Entity embeddings + MLP. ``forward(x_cat, x_cont)`` returns raw outputs of shape ``(batch, n_out)``."""

    def __init__(self, cardinalities: Sequence[int], n_cont: int, n_out: int = 1,
                 layers: Sequence[int] = (1000, 500), ps: float | Sequence[float] = (0.001, 0.01),
                 emb_drop: float = 0.04, emb_widths: dict[int, int] | Sequence[int] | None = None,
                 bn_cont: bool = True):
        super().__init__()
        widths = [embedding_width(n) for n in cardinalities]
        if isinstance(emb_widths, dict):  # override some columns by position
            widths = [emb_widths.get(i, w) for i, w in enumerate(widths)]
        elif emb_widths is not None:
            if len(emb_widths) != len(cardinalities):
                raise ValueError(f"emb_widths has {len(emb_widths)} entries for {len(cardinalities)} categorical columns")
            widths = list(emb_widths)
        ps = [float(ps)] * len(layers) if np.isscalar(ps) else list(ps)
        if len(ps) != len(layers):
            raise ValueError(f"ps has {len(ps)} dropout values for {len(layers)} layers; give one per layer")
        self.embeds = nn.ModuleList(nn.Embedding(n, w) for n, w in zip(cardinalities, widths))
        self.emb_drop = nn.Dropout(emb_drop)
        self.bn_cont = nn.BatchNorm1d(n_cont) if (bn_cont and n_cont) else nn.Identity()
        self.n_emb, self.n_cont = sum(widths), n_cont
        blocks, width_in = [], self.n_emb + n_cont
        for width, p in zip(layers, ps):
            blocks += [nn.Linear(width_in, width), nn.ReLU(inplace=True), nn.BatchNorm1d(width), nn.Dropout(p)]
            width_in = width
        self.body = nn.Sequential(*blocks)
        self.head = nn.Linear(width_in, n_out)

    def forward(self, x_cat: torch.Tensor, x_cont: torch.Tensor) -> torch.Tensor:
        parts = []
        if len(self.embeds):
            parts.append(self.emb_drop(torch.cat([e(x_cat[:, i]) for i, e in enumerate(self.embeds)], dim=1)))
        if self.n_cont:
            parts.append(self.bn_cont(x_cont))
        return self.head(self.body(torch.cat(parts, dim=1) if len(parts) > 1 else parts[0]))

    def layer_groups(self) -> list[nn.Module]:
        """Inputs (embeddings, continuous BatchNorm), hidden blocks, head: the groups for ``slice(lo, hi)`` LRs."""
        return [nn.ModuleList([self.embeds, self.bn_cont]), self.body, self.head]


def embedding_frames(model: TabularModel, processor) -> dict[str, pd.DataFrame]:
    """The learned embeddings, one DataFrame per categorical column: indexed by category value, one column per dim.

    Code 0 (missing / unseen) is the row with a missing index value.
    """
    frames = {}
    for i, name in enumerate(processor.all_cat_names):
        weight = model.embeds[i].weight.detach().float().cpu().numpy()
        # `_na` flags come after the declared columns: code 1 = value present, code 2 = value was missing
        values = processor.categories[name] if i < len(processor.cat_names) else [False, True]
        index = pd.Index([None] + list(values), name=name)
        frames[name] = pd.DataFrame(weight, index=index, columns=[f"{name}_emb{j}" for j in range(weight.shape[1])])
    return frames


def add_embeddings(x_cat: np.ndarray, frames: dict[str, pd.DataFrame], columns: Sequence[str] | None = None,
                   dtype=np.float32) -> pd.DataFrame:
    """Replace categorical codes by their embedding vectors (rows of ``frames``), e.g. as inputs for a GBM.

    ``x_cat`` are the processor's codes (column order = ``frames`` order); ``columns`` picks which columns to expand;
    ``dtype`` is the vectors' (float32: the network's own precision, half the memory of float64).
    """
    names = list(frames)
    columns = names if columns is None else list(columns)
    blocks = []
    for name in columns:
        j = names.index(name)
        table = frames[name].to_numpy(dtype)
        blocks.append(pd.DataFrame(table[x_cat[:, j]], columns=frames[name].columns))
    return pd.concat(blocks, axis=1) if blocks else pd.DataFrame(index=range(len(x_cat)))


def save_embeddings(frames: dict[str, pd.DataFrame], path) -> None:
    """Write embedding frames as one JSON file (atomically), e.g. for a GBM recipe run after the network's."""
    payload = {name: {"index": [None if pd.isna(v) else v for v in f.index.tolist()], "columns": list(f.columns),
                      "values": f.to_numpy().round(6).tolist()} for name, f in frames.items()}
    atomic_write_text(path, json.dumps(payload))


def load_embeddings(path) -> dict[str, pd.DataFrame]:
    payload = json.loads(Path(path).read_text())
    return {name: pd.DataFrame(p["values"], index=pd.Index(p["index"], name=name), columns=p["columns"])
            for name, p in payload.items()}
