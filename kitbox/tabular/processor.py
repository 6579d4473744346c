"""Turn a DataFrame into model inputs: categorical codes and normalized continuous columns.

:class:`TabularProcessor` is fitted on training rows only, then applied identically to validation and test rows,
and saved next to the run as JSON so a prediction job rebuilds exactly the same inputs.
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from kitbox.io.runs import atomic_write_text


def _plain(value):
    """A JSON-safe Python scalar for a category value (numpy ints/floats/bools become Python ones)."""
    return value.item() if isinstance(value, np.generic) else value


def _sorted_unique(series: pd.Series) -> list:
    values = pd.unique(series.dropna())
    try:
        values = sorted(values)
    except TypeError:  # mixed types: a stable order is all we need
        values = sorted(values, key=str)
    return [_plain(v) for v in values]


@dataclass
class TabularProcessor:
    """Categorify, fill missing numbers, normalize.

    - categorical columns: value -> code 1..n in sorted order; code 0 is reserved for missing and unseen values;
    - continuous columns: NaN -> the training median, plus a categorical ``<col>_na`` flag for every column that had
      missing values in training; then ``(x - mean) / std``.
    """

    cat_names: list[str]
    cont_names: list[str]
    categories: dict[str, list] = field(default_factory=dict)
    medians: dict[str, float] = field(default_factory=dict)
    means: dict[str, float] = field(default_factory=dict)
    stds: dict[str, float] = field(default_factory=dict)
    na_flags: list[str] = field(default_factory=list)  # continuous columns that got a `_na` flag

    # ---- fitting -----------------------------------------------------------------------------
    def fit(self, df: pd.DataFrame) -> "TabularProcessor":
        self._check_columns(df, "fit")
        self.categories = {c: _sorted_unique(df[c]) for c in self.cat_names}
        self.medians, self.means, self.stds, self.na_flags = {}, {}, {}, []
        for c in self.cont_names:
            x = pd.to_numeric(df[c], errors="raise").astype(np.float64)
            median = x.median()
            if np.isnan(median):
                raise ValueError(f"TabularProcessor.fit: continuous column {c!r} is entirely missing; drop it")
            if x.isna().any():
                self.na_flags.append(c)
            x = x.fillna(median)
            std = float(x.std(ddof=0))
            self.medians[c], self.means[c] = float(median), float(x.mean())
            self.stds[c] = std if std > 0 else 1.0  # a constant column stays at 0 rather than dividing by 0
        return self

    @property
    def all_cat_names(self) -> list[str]:
        """Categorical inputs in model order: the declared ones, then the `_na` flags."""
        return list(self.cat_names) + [f"{c}_na" for c in self.na_flags]

    @property
    def cardinalities(self) -> list[int]:
        """Embedding table sizes, one per categorical input (categories + 1 for the reserved code 0)."""
        return [len(self.categories[c]) + 1 for c in self.cat_names] + [3] * len(self.na_flags)

    # ---- applying ----------------------------------------------------------------------------
    def transform(self, df: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
        """``(x_cat int64 (n, n_cat), x_cont float32 (n, n_cont))`` for any rows laid out like the training rows."""
        if not self.categories and self.cat_names:
            raise RuntimeError("TabularProcessor.transform called before fit (or load)")
        self._check_columns(df, "transform")
        n = len(df)
        x_cat = np.zeros((n, len(self.all_cat_names)), dtype=np.int64)
        for j, c in enumerate(self.cat_names):
            # get_indexer gives -1 for unseen values and NaN, so +1 puts both on the reserved code 0
            x_cat[:, j] = pd.Index(self.categories[c], dtype=object).get_indexer(df[c].astype(object)) + 1
        x_cont = np.zeros((n, len(self.cont_names)), dtype=np.float32)
        for j, c in enumerate(self.cont_names):
            x = pd.to_numeric(df[c], errors="raise").to_numpy(np.float64)
            missing = np.isnan(x)
            if c in self.na_flags:
                x_cat[:, len(self.cat_names) + self.na_flags.index(c)] = np.where(missing, 2, 1)
            x = np.where(missing, self.medians[c], x)
            x_cont[:, j] = (x - self.means[c]) / self.stds[c]
        return x_cat, x_cont

    def tensors(self, df: pd.DataFrame, target=None) -> tuple[torch.Tensor, ...]:
        """Tensors for :class:`kitbox.training.sampling.TensorLoader`: ``(x_cat, x_cont)`` or ``(x_cat, x_cont, y)``."""
        x_cat, x_cont = self.transform(df)
        out = (torch.from_numpy(x_cat), torch.from_numpy(x_cont))
        if target is not None:
            y = torch.as_tensor(np.asarray(target, dtype=np.float32))
            out = out + (y.reshape(len(df), -1) if y.ndim > 1 else y,)
        return out

    def _check_columns(self, df: pd.DataFrame, where: str) -> None:
        missing = [c for c in self.cat_names + self.cont_names if c not in df.columns]
        if missing:
            raise KeyError(f"TabularProcessor.{where}: the table lacks column(s) {missing}; "
                           f"it has {list(df.columns)}")

    # ---- saving ------------------------------------------------------------------------------
    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=1)

    @classmethod
    def from_json(cls, text: str) -> "TabularProcessor":
        return cls(**json.loads(text))

    def save(self, path) -> Path:
        """Write atomically (temp file + rename) so an interrupted run never leaves half a processor."""
        return atomic_write_text(path, self.to_json())

    @classmethod
    def load(cls, path) -> "TabularProcessor":
        return cls.from_json(Path(path).read_text())
