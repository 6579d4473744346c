"""The contract between a competition adapter (``competitions/SLUG.py``) and the kitbox pipeline.

An adapter subclasses :class:`Competition` and says five things: how to read the files
(``load``), how to split the training rows into folds (``split``), the target to score
out-of-fold predictions against (``targets``), the training recipes (``recipes``), and how
test predictions become the submission (``submission``). The fold runner, ensembler and
submission checker in kitbox do the rest, identically for every competition.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pandas as pd

from kitbox.metrics import Metric, get_metric


@dataclass
class CompetitionData:
    """What ``Competition.load`` returns. ``train`` rows are the rows OOF predictions are indexed by."""

    train: pd.DataFrame
    test: pd.DataFrame
    sample_submission: pd.DataFrame
    data_dir: Path
    extra: dict[str, Any] = field(default_factory=dict)  # anything else an adapter needs (store table, image paths...)
    is_sample: bool = False  # True when this is the embedded mini competition


@dataclass
class FoldContext:
    """Everything a recipe needs to train one fold."""

    fold: int  # fold number; validation rows are ``valid_idx``
    train_idx: np.ndarray  # positions into ``data.train``
    valid_idx: np.ndarray  # positions into ``data.train``; OOF predictions are for exactly these rows
    data: CompetitionData
    fold_dir: Path  # this fold's folder inside the run folder (checkpoints, plots)
    seed: int = 42
    options: dict[str, Any] = field(default_factory=dict)  # command-line options: weights path, epochs, quick...


@dataclass
class FoldResult:
    """What a recipe returns for one fold. Arrays are predictions already decoded (probabilities, values)."""

    oof: np.ndarray  # shape (len(valid_idx), ...) in the order of ``valid_idx``
    test: np.ndarray  # shape (len(data.test), ...)
    snapshots_test: list[np.ndarray] = field(default_factory=list)  # SGDR snapshot test predictions, if any
    info: dict[str, Any] = field(default_factory=dict)  # extra figures for metrics.json (e.g. score without TTA)


Recipe = Callable[[FoldContext], FoldResult]


class Competition:
    """Base class for competition adapters. Subclasses set the class attributes and override the methods."""

    slug: str = ""  # Kaggle's competition slug, also the data folder's name
    aliases: tuple[str, ...] = ()  # short names for the command line
    metric_name: str = ""  # a key of kitbox.metrics.METRICS
    title: str = ""
    default_folds: int = 5
    sample_dir: Path | None = None  # the embedded mini competition shipped in the repo

    # what blend weights are chosen by on OOF, when not the metric itself: e.g. "f1_best_cut" for a competition
    # whose labels come from a threshold tuned on OOF, so the blend is picked for the score its labels will get
    blend_metric_name: str = ""

    @property
    def metric(self) -> Metric:
        return get_metric(self.metric_name)

    @property
    def blend_metric(self) -> Metric:
        return get_metric(self.blend_metric_name or self.metric_name)

    def load(self, data_dir: Path) -> CompetitionData:
        raise NotImplementedError(f"{type(self).__name__}.load")

    def split(self, data: CompetitionData, n_folds: int, seed: int) -> np.ndarray:
        """Fold id per training row, ``-1`` for rows that are only ever trained on (e.g. before a time holdout)."""
        raise NotImplementedError(f"{type(self).__name__}.split")

    def targets(self, data: CompetitionData) -> np.ndarray:
        """The values OOF predictions are scored against, one per training row."""
        raise NotImplementedError(f"{type(self).__name__}.targets")

    def recipes(self) -> dict[str, Recipe]:
        """Named training recipes; each runs on every fold, and the ensembler blends them."""
        raise NotImplementedError(f"{type(self).__name__}.recipes")

    def submission(self, data: CompetitionData, test_pred: np.ndarray) -> pd.DataFrame:
        """The submission table, in ``data.sample_submission``'s row order and columns."""
        raise NotImplementedError(f"{type(self).__name__}.submission")

    def score(self, y_true: np.ndarray, y_pred: np.ndarray) -> float:
        return self.metric(y_true, y_pred)
