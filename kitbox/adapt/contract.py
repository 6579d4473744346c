"""The contract between a competition adapter and the kitbox pipeline.

An adapter subclasses :class:`Competition` (or one of the ready-made bases in :mod:`kitbox.adapt.bases`) and says:
how to read the files (``load``), how to split the training rows into folds (``split``), the targets OOF
predictions are scored against (``targets``), the training recipes (``recipes``), what to decide from the
blended OOF predictions (``decide`` / ``apply``: a probability cut, say) and how predictions become the
submission table (``submission``). The pipeline in :mod:`kitbox.pipeline.stages` does the rest, the same way for
every competition.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pandas as pd

from kitbox.adapt.options import OptionError, _convert, describe_options, option_types
from kitbox.metrics import Metric, get_metric

TASK_KINDS = ("regression", "binary", "multiclass", "multilabel", "segmentation")


@dataclass
class Columns:
    """Which columns play which part. Generic recipes read these, so one recipe serves every competition."""

    id: str | None = None  # the submission's id column (also in test.csv)
    target: list[str] = field(default_factory=list)  # what to predict (several: multi-target / one column per label)
    text: list[str] = field(default_factory=list)  # free text, joined in this order
    cat: list[str] = field(default_factory=list)  # categorical inputs (entity embeddings, GBM categories)
    cont: list[str] = field(default_factory=list)  # continuous inputs
    group: str | None = None  # rows sharing a value stay in one fold


@dataclass
class CompetitionData:
    """What ``Competition.load`` returns. ``train`` rows are the rows OOF predictions are indexed by."""

    train: pd.DataFrame
    test: pd.DataFrame
    sample_submission: pd.DataFrame
    data_dir: Path
    extra: dict[str, Any] = field(default_factory=dict)  # anything else an adapter needs (a store table...)
    is_sample: bool = False  # True when this is the embedded mini competition
    sample_path: Path | None = None  # the sample file on disk: every written submission is checked against it
    task: str | None = None  # one of TASK_KINDS; generic recipes build their head and loss from it
    classes: list = field(default_factory=list)  # class (or label) values, in the order of prediction columns
    columns: Columns = field(default_factory=Columns)
    train_images: Any = None  # kitbox.vision.ImageItems for image competitions, row-aligned with ``train``
    test_images: Any = None  # row-aligned with ``test``
    notes: list[str] = field(default_factory=list)  # what loading skipped or assumed, printed in the run summary


@dataclass(frozen=True)
class RunSettings:
    """Settings of the whole run that every recipe may consult (not recipe options)."""

    quick: bool = False  # a smoke test: tiny schedules
    weights: str | None = None  # a pretrained weights file or folder (--weights)
    download_weights: bool = False  # allowed to fetch pretrained weights from the hub (--download-weights)
    from_scratch: bool = False  # no pretrained weights: random init
    device: str | None = None  # "cpu", "cuda" or None (CUDA when present)
    compile: bool = False  # torch.compile the models (falls back, with a message, where it fails)
    n_folds: int = 5
    progress: bool = True  # progress bars


@dataclass
class FoldContext:
    """Everything a recipe needs to train one fold (or the refit on every row: ``fold == "refit"``)."""

    fold: int | str
    train_idx: np.ndarray  # positions into ``data.train``
    valid_idx: np.ndarray  # positions into ``data.train``; OOF predictions are for exactly these rows (empty: refit)
    data: CompetitionData
    y: np.ndarray  # ``Competition.targets(data)``: one target per training row
    fold_dir: Path  # this fold's own folder (checkpoints, plots)
    shared_dir: Path  # shared by this recipe's folds in this configuration (caches such as a language model)
    cache_dir: Path | None = None  # shared by every recipe of the run: caches keyed by their whole content only
    seed: int = 42
    options: Any = None  # the recipe's typed options: an instance of its options dataclass
    settings: RunSettings = field(default_factory=RunSettings)
    inputs: dict[str, Path] = field(default_factory=dict)  # fold folders of the recipes this one needs
    scored_info: dict = field(default_factory=dict)  # refit only: the ``info`` of the folds that were scored

    @property
    def quick(self) -> bool:
        return self.settings.quick

    @property
    def is_refit(self) -> bool:
        return self.fold == "refit"

    def learner_options(self) -> dict:
        """What every recipe passes to :class:`kitbox.training.learner.Learner`: the run's device, compile and progress."""
        return {"device": self.settings.device, "compile": self.settings.compile, "progress": self.settings.progress}

    def task(self, **kwargs):
        """The :class:`kitbox.training.tasks.Task` for ``data.task`` (``n_out`` = number of classes / labels / targets)."""
        from kitbox.training.tasks import Task

        kind = self.data.task or "regression"
        if kind in ("multiclass", "multilabel"):
            kwargs.setdefault("n_out", len(self.data.classes))
        elif kind == "regression" and self.y.ndim == 2:
            kwargs.setdefault("n_out", self.y.shape[1])
        return Task(kind, **kwargs)


@dataclass
class FoldPredictions:
    """What a recipe returns for one fold. Arrays are decoded predictions (probabilities, values)."""

    oof: np.ndarray  # shape (len(valid_idx), ...) in the order of ``valid_idx``
    test: np.ndarray  # shape (len(data.test), ...)
    snapshots_test: list[np.ndarray] = field(default_factory=list)  # SGDR snapshot test predictions, if any
    info: dict[str, Any] = field(default_factory=dict)  # figures for metrics.json (e.g. score without TTA)
    # the fitted fold as an object whose ``predict(data)`` gives its prediction of ``data.test`` (``test`` for this
    # data): saved in the fold's folder (predictor.pt), it predicts a new test table without training again
    # (``--predict-only``, or a run whose test files changed). None: the fold can only be retrained
    predictor: Any = None


# ---------------------------------------------------------------------------------------------- recipes


@dataclass(frozen=True)
class NoOptions:
    """A recipe without options."""


@dataclass(frozen=True)
class Recipe:
    """A training recipe: a function of a :class:`FoldContext`, its typed options and what it needs.

    ``options`` is a dataclass whose fields are the recipe's options with their defaults (``--set KEY=VALUE``
    is parsed against it); ``needs`` names recipes whose fold folders this one reads (they run first);
    ``preflight(data, settings, options)`` raises before any training when the recipe cannot run (missing
    weights, a missing package).
    """

    fn: Callable[[FoldContext], FoldPredictions]
    options: type = NoOptions
    needs: tuple[str, ...] = ()
    preflight: Callable | None = None
    defaults: tuple[tuple[str, Any], ...] = ()  # option defaults changed by ``configure``
    pretrained: bool = False  # loads pretrained weights: under --from-scratch the run names it NAME_from_scratch

    def __call__(self, ctx: FoldContext) -> FoldPredictions:
        return self.fn(ctx)

    @property
    def name(self) -> str:
        return getattr(self.fn, "__name__", "recipe")

    def configure(self, **defaults) -> "Recipe":
        """The same recipe with other option defaults: ``cnn.configure(arch="resnet34", size=256)``."""
        known = option_types(self.options)
        unknown = sorted(set(defaults) - set(known))
        if unknown:
            raise OptionError(f"recipe {self.name!r} has no option(s) {unknown}; its options: {describe_options(self)}")
        merged = {**dict(self.defaults), **{k: _convert(k, v, known[k], self.name) for k, v in defaults.items()}}
        return dataclasses.replace(self, defaults=tuple(sorted(merged.items())))

    def make_options(self, values: dict | None = None):
        """An options instance: the declared defaults, then ``configure``'s, then ``values``."""
        return self.options(**{**dict(self.defaults), **(values or {})})


def recipe(options: type | None = None, needs=(), preflight: Callable | None = None, pretrained: bool = False):
    """Decorator: ``@recipe(options=CNNOptions)`` turns a function of a FoldContext into a :class:`Recipe`."""

    def wrap(fn):
        return Recipe(fn, options or NoOptions, tuple(needs), preflight, pretrained=pretrained)

    return wrap


def as_recipe(obj) -> Recipe:
    """A :class:`Recipe` for a Recipe or a plain function of a FoldContext."""
    if isinstance(obj, Recipe):
        return obj
    if callable(obj):
        return Recipe(obj)
    raise TypeError(f"a recipe must be a function of a FoldContext or a kitbox Recipe, got {type(obj).__name__}")


# ---------------------------------------------------------------------------------------------- the adapter


class Competition:
    """Base class for competition adapters. Subclasses set the class attributes and override the methods."""

    slug: str = ""  # Kaggle's competition slug, also the data folder's name
    aliases: tuple[str, ...] = ()  # short names for the command line
    metric_name: str = ""  # a key of kitbox.metrics.METRICS
    title: str = ""
    default_folds: int = 5
    sample_dir: Path | None = None  # an embedded mini competition shipped with the adapter
    # what blend weights are chosen by on OOF, when not the metric itself: e.g. "f1_best_cut" for a competition
    # whose labels come from a cut tuned on OOF, so the blend is picked for the score its labels will get
    blend_metric_name: str = ""
    # after CV, every recipe trains once more on every training row and predicts test with that model (a time
    # holdout, where the weeks just before the test period matter); the OOF scores still come from the folds
    refit: bool = False
    # folds are periods numbered back in time (0 the latest, as kitbox.pipeline.splits.time_holdouts gives them):
    # fold k trains only on the rows of older periods (ids above k) and of no period (-1), never on later days
    forward_folds: bool = False
    # a pseudo-labelled second round by default (the confidence, e.g. 0.95; --pseudo-label overrides): see
    # kitbox.pipeline.pseudo. None: one round
    pseudo_label: float | None = None

    @property
    def metric(self) -> Metric:
        if not self.metric_name:
            raise ValueError(f"{type(self).__name__}.metric_name is not set: name the competition's metric "
                             "(its Evaluation page says which), e.g. metric_name = 'auc'")
        return get_metric(self.metric_name)

    def blend_metric_for(self, task: str | None) -> Metric:
        """What blend weights are chosen by for a run of this ``task`` (``data.task``): ``blend_metric_name`` when
        set, else the metric itself."""
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

    def decide(self, oof: np.ndarray, y: np.ndarray) -> dict:
        """What to decide from (blended) OOF predictions before submitting, e.g. ``{"cut": 0.37}``. The pipeline
        also calls it on every fold's complement to score the decision on rows it was not made on."""
        return {}

    def apply(self, pred: np.ndarray, decided: dict) -> np.ndarray:
        """Predictions as the metric and the submission see them, given what ``decide`` returned."""
        return pred

    def submission(self, data: CompetitionData, pred: np.ndarray) -> pd.DataFrame:
        """The submission table, in ``data.sample_submission``'s row order and columns (``pred`` is already
        ``apply``-ed)."""
        raise NotImplementedError(f"{type(self).__name__}.submission")

    def score(self, y_true: np.ndarray, y_pred: np.ndarray) -> float:
        return self.metric(y_true, y_pred)

    def test_paths(self) -> list[str]:
        """Files and folders of the data folder that hold only what is predicted: the test table, the test images,
        the sample submission (default: the adapter's ``test_file``, ``test_dir`` and ``sample_file``). The folds'
        fingerprint leaves them out: when only they change (a code competition swaps in its hidden test set),
        finished folds are kept and their saved models predict the new test rows."""
        names = [getattr(self, name, None) for name in ("test_file", "test_dir", "sample_file")]
        return [str(n) for n in names if n] or ["test.csv", "sample_submission.csv"]
