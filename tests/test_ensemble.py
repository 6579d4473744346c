"""Averaging and blending: fold/rank/snapshot means, and Caruana selection that never loses to the best single model."""
from __future__ import annotations

import numpy as np
import pytest

from kitbox.pipeline import cv
from kitbox.pipeline import ensemble
from kitbox.metrics import get_metric
from helpers.sk_competition import SkDigits, bayes_recipe, logreg_recipe


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
                                         ("auc", "binary"), ("accuracy", "binary"), ("f1", "binary"),
                                         ("f1_best_cut", "binary")])
def test_caruana_reports_the_true_score_of_its_blend_and_never_leans_on_a_useless_model(metric, kind, seed):
    y, oofs = _noisy_models(kind, seed)
    m = get_metric(metric)
    found = ensemble.caruana(oofs, y, m, rank=metric in ensemble.RANK_METRICS)
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
    data = comp.load(tmp_path / "data")  # it writes its sample_submission.csv there
    y = comp.targets(data)
    results = cv.run_cv(data, comp.split(data, 4, 0), {"logreg": logreg_recipe, "bayes": bayes_recipe}, y,
                        "log_loss", tmp_path, log=lambda *_: None)
    oofs = {name: res.oof()[0] for name, res in results.items()}
    found = ensemble.caruana(oofs, y, "log_loss")
    assert found.best_single == "logreg" and found.score <= found.single_scores["logreg"]
    test = ensemble.blend({n: cv.recipe_test_pred(r, "log_loss") for n, r in results.items()}, found.weights)
    assert test.shape == (len(data.test), 10) and np.allclose(test.sum(1), 1)


def test_f1_at_every_cut_matches_sklearn_and_the_best_cut_is_the_middle_of_a_plateau():
    from sklearn.metrics import f1_score

    from kitbox.metrics import F1_CUTS, best_f1_cut, f1_at_cuts

    rng = np.random.default_rng(3)
    y = rng.integers(0, 2, 500)
    prob = np.clip(y * 0.3 + rng.uniform(0, 0.7, 500), 0, 1)
    prob[:20] = 0.5  # ties sitting exactly on a cut count as predicted positive (prob >= cut)
    expected = [f1_score(y, (prob >= c).astype(int), zero_division=0) for c in F1_CUTS]
    assert np.allclose(f1_at_cuts(y, prob), expected)
    # every positive at 0.8, every negative at 0.2: each cut from 0.21 to 0.80 is perfect; the middle one is taken
    cut, score = best_f1_cut(y, np.where(y == 1, 0.8, 0.2))
    assert score == 1.0 and cut == pytest.approx(0.5, abs=0.02)


def test_blending_by_the_tuned_cut_f1_keeps_a_model_that_only_helps_after_the_cut_moves():
    from kitbox.metrics import best_f1_cut

    # "b" ranks rows well but its probabilities sit low, so at a 0.5 cut it predicts few positives; F1 at 0.5 would
    # judge it by its calibration, F1 at the OOF-tuned cut by what it adds once the cut is chosen
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 4000)
    a = 1 / (1 + np.exp(-((2 * y - 1) * 1.2 + rng.normal(0, 1.5, 4000))))
    b = 0.4 / (1 + np.exp(-((2 * y - 1) * 1.2 + rng.normal(0, 1.5, 4000))))
    found = ensemble.caruana({"a": a, "b": b}, y, "f1_best_cut")
    blended = ensemble.blend({"a": a, "b": b}, found.weights)
    assert found.weights["b"] > 0.2 and found.score == pytest.approx(best_f1_cut(y, blended)[1])
    assert found.score > max(best_f1_cut(y, a)[1], best_f1_cut(y, b)[1]) + 0.01


def test_the_stacker_replaces_caruana_only_when_it_scores_better_on_held_out_folds():
    """An underconfident model (logits x 0.2): a weighted mean cannot sharpen it, a level-2 logistic can. The stacker
    is kept because it won on folds it was not fitted on, and each recipe's weight is its share of the coefficients."""
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 3000)
    signal = (2 * y - 1) + rng.normal(0, 1, 3000)
    oofs = {"timid": 1 / (1 + np.exp(-0.2 * signal)), "noise": rng.random(3000)}
    fitted = ensemble.fit_blend(oofs, y, "log_loss", task="binary", groups=np.arange(3000) % 5)
    assert fitted.method == "stack" and fitted.held_out["stack"] < fitted.held_out["caruana"] - 0.05
    assert fitted.weights["timid"] > 0.9 and sum(fitted.weights.values()) == pytest.approx(1.0)
    assert get_metric("log_loss")(y, ensemble.apply_blend(fitted, oofs)) < get_metric("log_loss")(y, oofs["timid"])

    well = {"a": 1 / (1 + np.exp(-signal)), "b": 1 / (1 + np.exp(-signal - rng.normal(0, 1, 3000)))}
    fitted = ensemble.fit_blend(well, y, "auc", task="binary", groups=np.arange(3000) % 5, rank=True)
    held = fitted.held_out
    assert fitted.method == ("stack" if held["stack"] > held["caruana"] else "caruana")


def test_a_regression_stacker_gives_a_recipe_that_only_hurts_no_share():
    rng = np.random.default_rng(1)
    y = rng.normal(10, 2, 2000)
    preds = {"good": y + rng.normal(0, 1, 2000), "anti": 20 - y + rng.normal(0, 1, 2000)}
    stacker = ensemble._fit_stacker(preds, y, "regression")
    assert ensemble.stack_shares(stacker, preds) == {"good": 1.0, "anti": 0.0}  # coefficients are kept >= 0
