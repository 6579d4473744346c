"""kitbox: a Kaggle competition starter kit. One shared trainer, k-fold CV with out-of-fold predictions,
ensembling and submissions checked against sample_submission.csv.

A new competition in a notebook::

    import kitbox

    class MyComp(kitbox.TabularCompetition):
        slug, metric_name = "my-comp", "auc"

    report = kitbox.run(MyComp(), data="/kaggle/input/my-comp")

The names below are imported on first use, so ``import kitbox`` (and ``submit.py --help``) stays fast
and does not load torch until a model is needed.
"""
from importlib import import_module

__version__ = "0.1.0"

_LAZY = {
    "run": "kitbox.pipeline.stages",
    "prepare": "kitbox.pipeline.stages",
    "train": "kitbox.pipeline.stages",
    "blend": "kitbox.pipeline.stages",
    "write": "kitbox.pipeline.stages",
    "submit": "kitbox.pipeline.stages",
    "Report": "kitbox.pipeline.stages",
    "RunConfig": "kitbox.pipeline.config",
    "Competition": "kitbox.adapt.contract",
    "CompetitionData": "kitbox.adapt.contract",
    "Columns": "kitbox.adapt.contract",
    "FoldContext": "kitbox.adapt.contract",
    "FoldPredictions": "kitbox.adapt.contract",
    "Recipe": "kitbox.adapt.contract",
    "recipe": "kitbox.adapt.contract",
    "TabularCompetition": "kitbox.adapt.bases",
    "TextCompetition": "kitbox.adapt.bases",
    "ImageCompetition": "kitbox.adapt.bases",
    "TableCompetition": "kitbox.adapt.bases",
    "SegmentationCompetition": "kitbox.adapt.bases",
    "get_competition": "kitbox.adapt.registry",
    "Learner": "kitbox.training.learner",
    "TrainingDiverged": "kitbox.training.learner",
    "SaveBest": "kitbox.training.callbacks",
    "EarlyStopping": "kitbox.training.callbacks",
    "MixUp": "kitbox.training.callbacks",
    "CutMix": "kitbox.training.callbacks",
    "seed_everything": "kitbox.training.device",
    "Task": "kitbox.training.tasks",
    "infer_task": "kitbox.training.tasks",
    "TensorLoader": "kitbox.training.sampling",
    "layer_groups": "kitbox.training.groups",
    "spread_lr": "kitbox.training.groups",
    "get_metric": "kitbox.metrics",
}

__all__ = sorted(_LAZY)


def lazy_exports(package: str, table: dict[str, str]):
    """A module ``__getattr__`` that imports ``name`` from ``table[name]`` on first use (PEP 562)."""

    def __getattr__(name):
        if name in table:
            return getattr(import_module(table[name]), name)
        raise AttributeError(f"module {package!r} has no attribute {name!r}")

    return __getattr__


__getattr__ = lazy_exports("kitbox", _LAZY)
