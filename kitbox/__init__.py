"""kitbox: a Kaggle competition starter kit. One shared trainer, k-fold CV with out-of-fold predictions,
ensembling and submissions checked against sample_submission.csv.

The names below are imported on first use, so ``import kitbox`` (and ``submit.py --help``) stays fast
and does not load torch until a model is needed.
"""
from importlib import import_module

__version__ = "0.1.0"

_LAZY = {
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


def __getattr__(name):
    if name in _LAZY:
        return getattr(import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'kitbox' has no attribute {name!r}")
