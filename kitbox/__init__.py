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
    "run": "kitbox.pipeline",
    "prepare": "kitbox.pipeline",
    "train": "kitbox.pipeline",
    "blend": "kitbox.pipeline",
    "write": "kitbox.pipeline",
    "submit": "kitbox.pipeline",
    "Report": "kitbox.pipeline",
    "Competition": "kitbox.competition",
    "CompetitionData": "kitbox.competition",
    "Columns": "kitbox.competition",
    "FoldContext": "kitbox.competition",
    "FoldPredictions": "kitbox.competition",
    "Recipe": "kitbox.competition",
    "recipe": "kitbox.competition",
    "TabularCompetition": "kitbox.bases",
    "TextCompetition": "kitbox.bases",
    "ImageCompetition": "kitbox.bases",
    "TableCompetition": "kitbox.bases",
    "get_competition": "kitbox.registry",
    "Learner": "kitbox.learner",
    "TrainingDiverged": "kitbox.learner",
    "SaveBest": "kitbox.callbacks",
    "EarlyStopping": "kitbox.callbacks",
    "MixUp": "kitbox.callbacks",
    "CutMix": "kitbox.callbacks",
    "seed_everything": "kitbox.device",
    "Task": "kitbox.tasks",
    "infer_task": "kitbox.tasks",
    "TensorLoader": "kitbox.data",
    "layer_groups": "kitbox.groups",
    "spread_lr": "kitbox.groups",
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
