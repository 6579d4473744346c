"""Every registered metric against scikit-learn or a hand-worked example, and the registry's directions and kinds."""
import inspect

import numpy as np
import pytest
from sklearn import metrics as skm

from kitbox import metrics
from kitbox.metrics import METRICS, get_metric

RNG = np.random.default_rng(0)


def sk_log_loss(y, p, **kwargs):
    """scikit-learn 1.9 renamed y_pred to y_proba; pass it by whichever name this version takes."""
    name = "y_proba" if "y_proba" in inspect.signature(skm.log_loss).parameters else "y_pred"
    return skm.log_loss(y, **{name: p}, **kwargs)


def softmax(z):
    e = np.exp(z - z.max(1, keepdims=True))
    return e / e.sum(1, keepdims=True)


@pytest.fixture(scope="module")
def binary():
    y = RNG.integers(0, 2, 300)
    p = np.clip(0.35 * y + RNG.uniform(0, 0.65, 300), 0.001, 0.999)
    p[:40] = np.round(p[:40], 1)  # ties, which AUC must count as half
    return y, p


@pytest.fixture(scope="module")
def multiclass():
    y = RNG.integers(0, 4, 400)
    probs = softmax(RNG.normal(size=(400, 4)) + 1.5 * np.eye(4)[y])
    return y, probs


def test_auc_binary_and_one_vs_rest(binary, multiclass):
    y, p = binary
    assert metrics.auc(y, p) == pytest.approx(skm.roc_auc_score(y, p), rel=1e-12)
    y, probs = multiclass
    assert metrics.auc(y, probs) == pytest.approx(skm.roc_auc_score(y, probs, multi_class="ovr"), rel=1e-12)
    with pytest.raises(ValueError, match="both classes"):
        metrics.auc(np.ones(5), np.linspace(0, 1, 5))


def test_log_loss_binary_and_multiclass(binary, multiclass):
    y, p = binary
    assert metrics.log_loss(y, p) == pytest.approx(sk_log_loss(y, p), rel=1e-12)
    y, probs = multiclass
    assert metrics.log_loss(y, probs) == pytest.approx(sk_log_loss(y, probs, labels=[0, 1, 2, 3]), rel=1e-12)
    # rows are rescaled to sum to 1 (Kaggle's rule): doubling every probability changes nothing
    assert metrics.log_loss(y, 2 * probs) == pytest.approx(metrics.log_loss(y, probs), rel=1e-12)


def test_accuracy_and_f1_binary_macro_micro(binary, multiclass):
    y, p = binary
    labels = (p >= 0.5).astype(int)
    assert metrics.accuracy(y, p) == pytest.approx(skm.accuracy_score(y, labels))
    assert metrics.f1(y, p) == pytest.approx(skm.f1_score(y, labels), rel=1e-12)
    assert metrics.f1(y, p, threshold=0.3) == pytest.approx(skm.f1_score(y, (p >= 0.3).astype(int)), rel=1e-12)
    y, probs = multiclass
    pred = probs.argmax(1)
    pred[pred == 3] = 2  # class 3 never predicted: its F1 is 0 and still counts in the macro mean
    one_hot = np.eye(4)[pred]
    assert metrics.accuracy(y, one_hot) == pytest.approx(skm.accuracy_score(y, pred))
    assert metrics.f1_macro(y, pred) == pytest.approx(skm.f1_score(y, pred, average="macro"), rel=1e-12)
    assert metrics.f1_micro(y, one_hot) == pytest.approx(skm.f1_score(y, pred, average="micro"), rel=1e-12)


def test_regression_metrics():
    y = RNG.uniform(1, 100, 200)
    pred = y * RNG.uniform(0.8, 1.2, 200)
    assert metrics.rmse(y, pred) == pytest.approx(np.sqrt(skm.mean_squared_error(y, pred)), rel=1e-12)
    assert metrics.rmsle(y, pred) == pytest.approx(np.sqrt(skm.mean_squared_log_error(y, pred)), rel=1e-12)
    assert metrics.mae(y, pred) == pytest.approx(skm.mean_absolute_error(y, pred), rel=1e-12)
    with pytest.raises(ValueError, match="clip"):
        metrics.rmsle(y, pred - 50)
    # RMSPE by hand: rows with a true 0 are skipped; errors of 10% and 20% give sqrt((0.01 + 0.04) / 2)
    assert metrics.rmspe([100, 0, 50], [110, 7, 40]) == pytest.approx(np.sqrt(0.025))


def test_quadratic_weighted_kappa(multiclass):
    y, probs = multiclass
    pred = probs.argmax(1)
    expected = skm.cohen_kappa_score(y, pred, weights="quadratic")
    assert metrics.quadratic_weighted_kappa(y, pred) == pytest.approx(expected, rel=1e-12)
    assert metrics.quadratic_weighted_kappa(y, probs) == pytest.approx(expected, rel=1e-12)  # argmax of probs
    assert metrics.quadratic_weighted_kappa(y, pred + 0.3) == pytest.approx(expected)  # regression outputs rounded
    # by hand: ratings [0, 1, 2] against [0, 2, 2]. Weighted disagreement observed: (1 - 2)^2 = 1; expected from the
    # histograms [1, 1, 1] and [1, 0, 2]: 8/3 + 1 + 4/3 = 5 (weights (i - j)^2, over 3 rows); kappa = 1 - 1/5
    assert metrics.quadratic_weighted_kappa([0, 1, 2], [0, 2, 2]) == pytest.approx(0.8, rel=1e-12)
    assert metrics.quadratic_weighted_kappa([0, 1, 2, 3], [0, 1, 2, 3]) == 1.0


def test_map_at_k_by_hand_with_labels_or_scores():
    # one true label per row, found at rank 1, 2, 3 and not at all: (1 + 1/2 + 1/3 + 0) / 4
    truth = [3, 1, 0, 2]
    ranked = [[3, 0, 1], [0, 1, 2], [1, 2, 0], [0, 1, 3]]
    expected = (1 + 1 / 2 + 1 / 3 + 0) / 4
    assert metrics.map_at_k(truth, ranked, k=3) == pytest.approx(expected)
    scores = np.zeros((4, 4))
    for row, labels in enumerate(ranked):
        scores[row, labels] = [0.9, 0.5, 0.2]  # the same rankings, as a score matrix
    assert metrics.map_at_k(truth, scores, k=3) == pytest.approx(expected)
    assert metrics.map_at_k(truth, scores, k=1) == pytest.approx(1 / 4)
    # several relevant labels: hits at ranks 1 and 3 give (1/1 + 2/3) / min(2, 3); a repeated guess counts once
    assert metrics.map_at_k([["a", "b"]], [["a", "c", "b"]], k=3) == pytest.approx((1 + 2 / 3) / 2)
    assert metrics.map_at_k([["a", "b"]], [["a", "a", "b"]], k=3) == pytest.approx((1 + 2 / 3) / 2)
    assert get_metric("map@3")(truth, ranked) == pytest.approx(expected)


def test_mean_columnwise_auc_and_log_loss():
    y = RNG.integers(0, 2, (200, 5))
    p = np.clip(0.3 * y + RNG.uniform(0, 0.7, (200, 5)), 0.01, 0.99)
    assert metrics.mean_columnwise_auc(y, p) == pytest.approx(skm.roc_auc_score(y, p, average="macro"), rel=1e-12)
    expected = np.mean([sk_log_loss(y[:, j], p[:, j]) for j in range(5)])
    assert metrics.mean_columnwise_log_loss(y, p) == pytest.approx(expected, rel=1e-12)


def test_the_registry_knows_each_metrics_direction_and_kind():
    kinds = {
        "label": {"accuracy", "f1", "f1_macro", "f1_micro", "f1_best_cut", "qwk", "f2_multilabel"},
        "probability": {"log_loss", "auc", "mean_columnwise_auc", "mean_columnwise_log_loss"},
        "value": {"rmse", "rmsle", "mae", "rmspe"},
        "ranking": {"map@5"},
        "mask": {"dice", "iou"},
    }
    assert {name: m.kind for name, m in METRICS.items()} == {n: k for k, names in kinds.items() for n in names}
    lower_is_better = {"rmse", "rmsle", "mae", "rmspe", "log_loss", "mean_columnwise_log_loss"}
    assert {name for name, m in METRICS.items() if not m.greater_is_better} == lower_is_better
    assert get_metric("map@12").name == "map@12" and get_metric("map@12").kind == "ranking"
    with pytest.raises(KeyError, match="map@K"):
        get_metric("rmsse")
    with pytest.raises(ValueError, match="kind"):
        metrics.Metric("x", metrics.rmse, False, kind="values")


def test_a_cut_chosen_on_oof_beats_the_fixed_half():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 2000)
    probs = np.clip(0.3 * y + rng.uniform(0, 0.6, 2000), 0, 1)  # positives sit above ~0.3, never near 0.5 alone
    cut, score = metrics.best_f1_cut(y, probs)
    assert 0.25 <= cut <= 0.4 and score > metrics.f1(y, probs) + 0.1
    # any label metric can choose the cut; with F1 itself it agrees with the vectorised path
    assert metrics.best_f1_cut(y, probs, score_fn=metrics.f1) == pytest.approx((cut, score))
    cut_acc, acc = metrics.best_f1_cut(y, probs, score_fn=metrics.accuracy)
    assert acc == pytest.approx(metrics.accuracy(y, (probs >= cut_acc).astype(int)))
    assert acc >= max(metrics.accuracy(y, (probs >= c).astype(int)) for c in metrics.F1_CUTS)


def test_per_label_thresholds_find_each_labels_own_cut():
    rng = np.random.default_rng(1)
    y = rng.integers(0, 2, (3000, 2))
    # overlapping scores; label 1's sit 0.3 higher than label 0's, so its best cut does too
    noise = rng.uniform(0, 0.5, (3000, 2))
    probs = np.stack([0.2 * y[:, 0] + noise[:, 0], 0.3 + 0.2 * y[:, 1] + noise[:, 1]], 1)
    thresholds = metrics.best_thresholds(y, probs, beta=2.0)
    assert thresholds[1] - thresholds[0] == pytest.approx(0.3)
    best_common = max(metrics.fbeta_multilabel(y, probs, 2.0, t) for t in np.linspace(0.05, 0.95, 19))
    assert metrics.fbeta_multilabel(y, probs, 2.0, thresholds) > best_common + 0.01
    from kitbox.vision import best_thresholds as vision_best_thresholds

    assert vision_best_thresholds is metrics.best_thresholds
