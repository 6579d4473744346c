"""Pseudo-labelling (``--pseudo-label CONFIDENCE``): a second round in which every fold also trains on the test
rows that the first round predicted with at least that confidence, labelled with its prediction.

The round stays honest: fold k's pseudo-labels come from fold k's own first-round models, which never saw fold
k's validation rows, so no validation label reaches its training rows through the test predictions. Only the
blend weights that combine the recipes' predictions were chosen on every OOF row. The refit, which has no
validation rows, uses the first round's test prediction. Pseudo rows never enter validation, OOF or the score.

Every test row is appended to the training table once, with fold id :data:`PSEUDO`. Each fold then adds its own
confident ones to its training rows. The tables are the same for every fold, so features cached per
configuration (text vectors, image features) stay valid. A recipe takes its targets from ``ctx.y``, as the
contract says: the table's own target column is empty on the appended rows.
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np
import pandas as pd

from kitbox.errors import InputError
from kitbox.io import fingerprint
from kitbox.pipeline import cv

PSEUDO = -2  # fold id of the appended test rows: never validated; trained on only where a fold's rows say so


@dataclass
class PseudoRows:
    """Per fold (and ``"refit"``): the positions of its pseudo rows in the extended table, and their labels."""

    rows: dict = field(default_factory=dict)
    labels: dict = field(default_factory=dict)

    def targets(self, fold, y: np.ndarray) -> np.ndarray:
        """``y`` with this fold's pseudo-labels filled in."""
        rows = self.rows.get(fold, np.array([], dtype=np.int64))
        if not len(rows):
            return y
        y = np.array(y, copy=True)
        y[rows] = self.labels[fold]
        return y


def confident(pred: np.ndarray, task: str, threshold: float) -> tuple[np.ndarray, np.ndarray]:
    """(test rows predicted with probability >= ``threshold``, their labels) for a binary (P(positive) per row)
    or multiclass (a probability per class) prediction."""
    pred = np.asarray(pred, dtype=np.float64)
    if task == "binary":
        p = pred.reshape(len(pred), -1)[:, -1]
        rows = np.flatnonzero(np.maximum(p, 1 - p) >= threshold)
        return rows, (p[rows] >= 0.5).astype(np.int64)
    if task == "multiclass":
        rows = np.flatnonzero(pred.max(1) >= threshold)
        return rows, pred[rows].argmax(1).astype(np.int64)
    raise InputError(f"--pseudo-label needs a binary or multiclass target (this one is {task}): a confident "
                     "prediction is a class probability")


def weighted_mean(preds: dict[str, np.ndarray], weights: dict[str, float]) -> np.ndarray:
    """The recipes' probabilities averaged with the blend's weights (shares of the stacker's coefficients when it
    stacked): a probability whatever the blend's method."""
    used = {n: w for n, w in weights.items() if w > 0} or {n: 1.0 for n in preds}
    total = sum(used.values())
    return sum(np.asarray(preds[n], dtype=np.float64) * (w / total) for n, w in used.items())


def _extended(data, y: np.ndarray, folds: np.ndarray):
    """The competition data with every test row appended to the training rows (labels filled in per fold)."""
    n_test = len(data.test)
    train = pd.concat([data.train, data.test], ignore_index=True)
    images = data.train_images
    if images is not None and data.test_images is not None:
        from kitbox.vision.data import ImageItems

        test_images = data.test_images
        images = ImageItems(
            paths=None if images.paths is None else [*images.paths, *test_images.paths],
            pixels=None if images.pixels is None else np.concatenate([images.pixels, test_images.pixels]),
            labels=None if images.labels is None else np.concatenate(
                [images.labels, np.zeros((n_test,) + images.labels.shape[1:], images.labels.dtype)]),
            classes=images.classes, ids=None if images.ids is None else [*images.ids, *(test_images.ids or [])],
            skipped=list(images.skipped))
    y = np.asarray(y)
    y_ext = np.concatenate([y, np.zeros((n_test,) + y.shape[1:], y.dtype)])
    return replace(data, train=train, train_images=images), y_ext, np.concatenate([folds, np.full(n_test, PSEUDO)])


def check_threshold(threshold: float) -> None:
    if not 0.5 <= threshold < 1.0:
        raise InputError(f"--pseudo-label {threshold:g}: give the confidence a test prediction needs, in [0.5, 1), "
                         "e.g. --pseudo-label 0.95")


def second_round(plan, results: dict[str, cv.RecipeFolds], blended: dict, threshold: float):
    """The plan of the pseudo-labelled round (each recipe in its own configuration folder) and a note per fold
    of how many test rows it added; ``plan`` is a :class:`kitbox.pipeline.stages.Plan`."""
    check_threshold(threshold)
    task = plan.data.task
    if task is None:  # an adapter that names no task: the targets say
        from kitbox.training.tasks import infer_task

        task = infer_task(plan.y).kind
    weights = blended["weights"]
    pseudo = PseudoRows()
    n_train = len(plan.folds)
    counts = {}
    for fold in sorted({int(k) for k in plan.folds if k >= 0}):
        preds = {n: res.finished[fold].test for n, res in results.items()}
        rows, labels = confident(weighted_mean(preds, weights), task, threshold)
        pseudo.rows[fold], pseudo.labels[fold] = n_train + rows, labels
        counts[fold] = len(rows)
    if plan.competition.refit:
        rows, labels = confident(weighted_mean({n: res.test() for n, res in results.items()}, weights), task,
                                 threshold)
        pseudo.rows["refit"], pseudo.labels["refit"] = n_train + rows, labels
    data, y, folds = _extended(plan.data, plan.y, plan.folds)
    source = {n: rp.config_dir.name for n, rp in plan.recipes.items()}
    plans: dict[str, cv.RecipePlan] = {}
    for name, rp in plan.recipes.items():
        config = {**rp.config, "pseudo_label": {"threshold": threshold, "first_round": source}}
        config["needs"] = {dep: plans[dep].config_dir.name for dep in rp.recipe.needs}
        plans[name] = replace(rp, config=config, config_dir=rp.config_dir.parent / fingerprint.digest(config),
                              needs={dep: plans[dep].config_dir for dep in rp.recipe.needs}, done_before=None,
                              pseudo=pseudo)
    share = np.mean(list(counts.values())) / max(1, len(plan.data.test))
    note = (f"pseudo-labels: test rows predicted with confidence >= {threshold:g} join each fold's training rows "
            f"(never its validation rows), labelled by that fold's own models: {share:.0%} of the test rows "
            f"(per fold {', '.join(str(c) for c in counts.values())})")
    return replace(plan, data=data, y=y, folds=folds, recipes=plans), note
