"""Averaging and blending: fold/rank/snapshot means, and Caruana selection that never loses to the best single model."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from kitbox import cv, ensemble
from kitbox.metrics import get_metric
from test_cv import SkDigits, bayes_recipe, logreg_recipe


def test_fold_mean_rank_mean_and_snapshot_mean():
    a, b = np.array([0.1, 0.9, 0.5]), np.array([0.3, 0.7, 0.2])
    assert np.allclose(ensemble.fold_mean([a, b]), [0.2, 0.8, 0.35])
    assert np.allclose(ensemble.rank_mean([a, b * 100]), [0.5, 1.0, 0.5])  # ranks 1/3,1,2/3 and 2/3,1,1/3: scale-free
    assert np.allclose(ensemble.snapshot_mean(a, [b, b]), b)
    assert np.allclose(ensemble.snapshot_mean(a, []), a)
    with pytest.raises(ValueError, match="different shapes"):
        ensemble.fold_mean([a, np.zeros(4)])
    with pytest.raises(ValueError, match="empty"):
        ensemble.fold_mean([])


def test_blend_is_a_weighted_average_and_ignores_zero_weights():
    preds = {"a": np.array([0.0, 1.0]), "b": np.array([1.0, 1.0])}
    assert np.allclose(ensemble.blend(preds, {"a": 3, "b": 1}), [0.25, 1.0])
    assert np.allclose(ensemble.blend(preds, {"a": 1.0, "missing": 0.0}), [0.0, 1.0])
    with pytest.raises(ValueError, match="positive"):
        ensemble.blend(preds, {"a": 0.0})


def _noisy_models(kind: str, seed: int):
    """Targets and three models of different quality, one of them almost useless."""
    rng = np.random.default_rng(seed)
    n = 400
    if kind == "regression":
        y = rng.normal(10, 2, n)
        return y, {f"m{i}": y + rng.normal(0, s, n) for i, s in enumerate([0.8, 1.0, 4.0])}
    y = rng.integers(0, 2, n)
    logit = lambda s: 1 / (1 + np.exp(-((y * 2 - 1) * 1.5 + rng.normal(0, s, n))))  # noqa: E731
    return y, {f"m{i}": logit(s) for i, s in enumerate([1.5, 2.0, 8.0])}


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("metric,kind", [("rmse", "regression"), ("rmspe", "regression"), ("log_loss", "binary"),
                                         ("auc", "binary"), ("accuracy", "binary"), ("f1", "binary")])
def test_caruana_blend_never_scores_below_the_best_single_model(metric, kind, seed):
    y, oofs = _noisy_models(kind, seed)
    m = get_metric(metric)
    found = ensemble.caruana(oofs, y, m, rank=metric in ensemble.RANK_METRICS)
    best = found.single_scores[found.best_single]
    assert not m.better(best, found.score)  # blend >= best single, in the metric's direction
    assert found.score == pytest.approx(m(y, ensemble.blend(oofs, found.weights, rank=metric == "auc")))
    assert sum(found.weights.values()) == pytest.approx(1.0) and min(found.weights.values()) >= 0
    assert found.weights["m2"] < 0.5  # the near-useless model never dominates


def test_caruana_blends_two_independent_models_and_drops_a_useless_one():
    rng = np.random.default_rng(0)
    y = rng.normal(0, 1, 2000)
    oofs = {"a": y + rng.normal(0, 1, 2000), "b": y + rng.normal(0, 1, 2000), "noise": rng.normal(3, 1, 2000)}
    found = ensemble.caruana(oofs, y, "rmse")
    assert found.score < min(found.single_scores.values()) * 0.8  # averaging independent errors helps ~1/sqrt(2)
    assert found.weights["noise"] == 0 and found.weights["a"] > 0.3 and found.weights["b"] > 0.3


def test_a_single_model_gets_all_the_weight():
    y, oofs = _noisy_models("regression", 0)
    found = ensemble.caruana({"only": oofs["m0"]}, y, "rmse")
    assert found.weights == {"only": 1.0} and found.score == found.single_scores["only"]


def test_blend_of_real_recipes_on_digits_oof(tmp_path):
    comp = SkDigits()
    data = comp.load(Path("."))
    y = comp.targets(data)
    results = cv.run_cv(data, comp.split(data, 4, 0), {"logreg": logreg_recipe, "bayes": bayes_recipe}, y,
                        "log_loss", tmp_path, log=lambda *_: None)
    oofs = {name: res.oof()[0] for name, res in results.items()}
    found = ensemble.caruana(oofs, y, "log_loss")
    assert found.best_single == "logreg" and found.score <= found.single_scores["logreg"]
    test = ensemble.blend({n: cv.recipe_test_pred(r, "log_loss") for n, r in results.items()}, found.weights)
    assert test.shape == (len(data.test), 10) and np.allclose(test.sum(1), 1)
