"""The ready-made bases: targets and task read from the files, ids kept as text, and predictions written in the
sample's shape, whatever it is (one label column, one probability column, one column per class, several targets,
space-separated tags). Real data: scikit-learn's digit scans and the Disaster Tweets sample, in Kaggle's layouts."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import kitbox
from kitbox import FoldPredictions, TabularCompetition, TextCompetition, recipe
from kitbox.errors import InputError
from helpers.sk_digits import write_digits

REPO = Path(__file__).resolve().parents[1]
TWEETS = REPO / "competitions" / "samples" / "nlp-getting-started"


@recipe()
def sk_model(ctx):
    """Logistic regression (per label for multi-label) or ridge on the numeric columns, for any task."""
    from sklearn.linear_model import LogisticRegression, Ridge

    cols = [c for c in ctx.data.train.columns if c.startswith("pixel")]
    x, xt = ctx.data.train[cols].to_numpy(float) / 16, ctx.data.test[cols].to_numpy(float) / 16
    tr, va = ctx.train_idx, ctx.valid_idx
    if ctx.data.task == "regression":
        model = Ridge().fit(x[tr], ctx.y[tr])
        return FoldPredictions(oof=model.predict(x[va]), test=model.predict(xt))
    if ctx.data.task == "multilabel":
        models = [LogisticRegression(max_iter=200).fit(x[tr], ctx.y[tr, j]) for j in range(ctx.y.shape[1])]
        return FoldPredictions(oof=np.stack([m.predict_proba(x[va])[:, 1] for m in models], 1),
                               test=np.stack([m.predict_proba(xt)[:, 1] for m in models], 1))
    model = LogisticRegression(max_iter=200).fit(x[tr], ctx.y[tr])
    p_va, p_te = model.predict_proba(x[va]), model.predict_proba(xt)
    return FoldPredictions(oof=p_va[:, 1] if ctx.data.task == "binary" else p_va,
                           test=p_te[:, 1] if ctx.data.task == "binary" else p_te)


def digits_comp(**attrs):
    return type("Digits", (TabularCompetition,), {"slug": "sk-digits", "default_folds": 3,
                                                  "recipes": lambda self: {"sk": sk_model}, **attrs})()


def run(comp, data, tmp_path):
    report = kitbox.run(comp, data, run_dir=tmp_path / "runs" / "x", out=tmp_path / "sub.csv", log=lambda *_: None)
    return report, pd.read_csv(tmp_path / "sub.csv", dtype=str, keep_default_na=False)


def test_one_label_column_gets_the_classes_back_as_written(tmp_path):
    data = write_digits(tmp_path / "d")
    train = pd.read_csv(data / "train.csv")
    train["label"] = np.where(train["label"] % 2 == 0, "Even", "odd")  # text classes, mixed case
    train.to_csv(data / "train.csv", index=False)
    report, sub = run(digits_comp(metric_name="accuracy"), data, tmp_path)
    assert set(sub["Label"]) == {"Even", "odd"} and report.blend["decided"]["cut"] > 0
    loaded = digits_comp(metric_name="accuracy").load(data)
    assert loaded.task == "binary" and loaded.classes == ["Even", "odd"]


def test_one_probability_column_is_the_positive_class(tmp_path):
    data = write_digits(tmp_path / "d")
    train = pd.read_csv(data / "train.csv")
    train["label"] = (train["label"] == 3).astype(int)  # is it a 3?
    train.to_csv(data / "train.csv", index=False)
    report, sub = run(digits_comp(metric_name="auc"), data, tmp_path)
    probs = sub["Label"].astype(float)
    assert probs.between(0, 1).all() and probs.nunique() > 100
    assert report.recipes["sk"]["oof"] > 0.95
    assert any("ranks" in w for w in report.warnings)  # AUC blends ranks: said loudly


def test_one_column_per_class_gets_each_class_probability(tmp_path):
    data = write_digits(tmp_path / "d")
    sample = pd.read_csv(data / "sample_submission.csv")
    wide = pd.DataFrame({"ImageId": sample["ImageId"], **{str(k): 0.1 for k in range(10)}})
    wide.to_csv(data / "sample_submission.csv", index=False)
    report, sub = run(digits_comp(metric_name="log_loss"), data, tmp_path)
    assert list(sub.columns) == ["ImageId"] + [str(k) for k in range(10)]
    probs = sub.drop(columns="ImageId").astype(float).to_numpy()
    assert np.allclose(probs.sum(1), 1, atol=1e-6) and (probs.argmax(1) >= 0).all()
    assert report.recipes["sk"]["oof"] < 0.3  # multi-class log loss of a fair model


def test_several_target_columns_are_predicted_each(tmp_path):
    data = write_digits(tmp_path / "d")
    train = pd.read_csv(data / "train.csv")
    train["ink"] = train.filter(like="pixel").sum(axis=1) / 100.0
    train["top"] = train[[f"pixel{i}" for i in range(32)]].sum(axis=1) / 50.0
    train.drop(columns="label").to_csv(data / "train.csv", index=False)
    sample = pd.read_csv(data / "sample_submission.csv")
    pd.DataFrame({"ImageId": sample["ImageId"], "ink": 0.0, "top": 0.0}).to_csv(data / "sample_submission.csv",
                                                                                 index=False)
    report, sub = run(digits_comp(metric_name="rmse", drop_cols=("label",)), data, tmp_path)
    assert list(sub.columns) == ["ImageId", "ink", "top"]
    test = pd.read_csv(data / "test.csv")
    truth = test.filter(like="pixel").sum(axis=1) / 100.0
    assert np.corrcoef(sub["ink"].astype(float), truth)[0, 1] > 0.99  # a linear target: ridge finds it


def test_space_separated_tags_are_multi_label(tmp_path):
    data = write_digits(tmp_path / "d")
    train = pd.read_csv(data / "train.csv")
    tags = {0: "round", 6: "round loop", 8: "round loop", 9: "loop", 1: "straight", 7: "straight"}
    train["label"] = train["label"].map(lambda d: tags.get(d, "other"))
    train.to_csv(data / "train.csv", index=False)
    comp = digits_comp(metric_name="f2_multilabel")
    loaded = comp.load(data)
    assert loaded.task == "multilabel" and loaded.classes == ["loop", "other", "round", "straight"]
    assert comp.targets(loaded).shape == (len(train), 4)
    report, sub = run(comp, data, tmp_path)
    words = {w for row in sub["Label"] for w in row.split()}
    assert words <= {"loop", "other", "round", "straight"} and "loop round" in set(sub["Label"])  # tags in class order


def test_ids_stay_text_and_unknown_ids_are_named(tmp_path):
    data = write_digits(tmp_path / "d", id_format="A{:05d}")
    comp = digits_comp(metric_name="accuracy")
    assert comp.load(data).test["ImageId"].iloc[0] == "A00001"
    sample = pd.read_csv(data / "sample_submission.csv", dtype=str)
    sample.loc[0, "ImageId"] = "B99999"
    sample.to_csv(data / "sample_submission.csv", index=False)
    with pytest.raises(InputError, match=r"1 id\(s\) of sample_submission.csv are not in test.csv's 'ImageId', e.g. "
                                         r"\['B99999'\]"):
        comp.load(data)


def test_a_missing_target_is_an_error_naming_the_rows(tmp_path):
    data = write_digits(tmp_path / "d")
    train = pd.read_csv(data / "train.csv")
    train.loc[[3, 10], "label"] = np.nan
    train.to_csv(data / "train.csv", index=False)
    with pytest.raises(InputError, match=r"empty on 2 row\(s\) of train, e.g. rows \[3, 10\]"):
        kitbox.run(digits_comp(metric_name="accuracy"), data, run_dir=tmp_path / "r", log=lambda *_: None)


def test_text_columns_are_found_the_longest_last(tmp_path):
    comp = type("Tweets", (TextCompetition,), {"slug": "t", "metric_name": "f1"})()
    loaded = comp.load(TWEETS)
    assert loaded.columns.text == ["keyword", "location", "text"] and loaded.task == "binary"
    assert loaded.columns.id == "id" and isinstance(loaded.test["id"].iloc[0], str)


def test_the_cut_and_the_blend_are_scored_on_folds_they_were_not_chosen_on(tmp_path):
    """With noise recipes, the in-sample F1 at the OOF-tuned cut flatters; the honest figure does not."""
    data = write_digits(tmp_path / "d")
    train = pd.read_csv(data / "train.csv")
    train["label"] = np.random.default_rng(0).integers(0, 2, len(train))  # labels unrelated to the pixels
    train.to_csv(data / "train.csv", index=False)

    @recipe()
    def noise(ctx):
        rng = np.random.default_rng(ctx.fold)
        return FoldPredictions(oof=rng.random(len(ctx.valid_idx)), test=rng.random(len(ctx.data.test)))

    comp = digits_comp(metric_name="f1", recipes=lambda self: {"noise": noise, "sk": sk_model})
    report = kitbox.run(comp, data, run_dir=tmp_path / "r", out=tmp_path / "s.csv", log=lambda *_: None)
    blend = report.blend
    assert blend["score_honest"] < blend["score"]  # tuned on the rows it is scored on, F1 looks better than it is
    from kitbox.pipeline import ensemble
    from kitbox.metrics import f1

    y = comp.targets(comp.load(data))
    groups = ensemble.holdout_groups(comp.split(comp.load(data), 3, 42))
    oofs = {}
    for name in ("noise", "sk"):
        folder = next(p for p in (tmp_path / "r" / name).iterdir() if p.is_dir())
        oofs[name] = np.zeros(len(y))
        for k in range(3):
            oofs[name][np.load(folder / f"fold{k}" / "valid_idx.npy")] = np.load(folder / f"fold{k}" / "oof.npy")
    honest = ensemble.nested_predictions(oofs, y, groups, comp.blend_metric_for("binary"), comp.decide, comp.apply, task="binary")
    assert blend["score_honest"] == pytest.approx(f1(y, honest))


@recipe()
def sk_timid(ctx):
    """sk_model's classes said with about 28 % confidence, right or wrong: the same labels, badly calibrated."""
    pred = sk_model(ctx)
    timid = lambda p: 0.2 * (p == p.max(1, keepdims=True)) + 0.8 / p.shape[1]
    return FoldPredictions(oof=timid(pred.oof), test=timid(pred.test))


def test_a_label_metric_on_one_label_chooses_blend_weights_by_log_loss(tmp_path):
    """Accuracy cannot tell two recipes with the same labels apart (Caruana on it keeps the first one listed, the
    timid one); log loss prefers the calibrated one. F1 keeps its blend at the tuned cut."""
    from kitbox.pipeline import ensemble

    comp = digits_comp(metric_name="accuracy", recipes=lambda self: {"timid": sk_timid, "sk": sk_model})
    data = write_digits(tmp_path / "d")
    plan = kitbox.prepare(comp, data, run_dir=tmp_path / "r", progress=False, log=lambda *_: None)
    results = kitbox.train(plan)
    report = kitbox.write(plan, results, kitbox.blend(plan, results), out=tmp_path / "sub.csv")
    blend = report.blend
    assert blend["metric"] == "log_loss" and "weights chosen for log_loss" in report.summary()
    oofs = {name: res.oof()[0] for name, res in results.items()}
    assert ensemble.caruana(oofs, plan.y, comp.blend_metric_for(plan.data.task)).weights == {"timid": 0.0, "sk": 1.0}
    assert ensemble.caruana(oofs, plan.y, "accuracy").weights == {"timid": 1.0, "sk": 0.0}  # what accuracy would keep
    assert report.metric == "accuracy" and blend["score"] >= report.recipes["sk"]["oof"] > 0.9  # scored by accuracy
    assert digits_comp(metric_name="f1").blend_metric_for("binary").name == "f1_best_cut"
    assert digits_comp(metric_name="rmse").blend_metric_for("regression").name == "rmse"
    assert digits_comp(metric_name="accuracy").blend_metric_for("multilabel").name == "accuracy"  # tags: no log loss


def test_map_at_k_submits_the_k_likeliest_classes_best_first(tmp_path):
    data = write_digits(tmp_path / "d")
    report, sub = run(digits_comp(metric_name="map@3"), data, tmp_path)
    ranked = [row.split() for row in sub["Label"]]
    assert all(len(r) == 3 and len(set(r)) == 3 for r in ranked)
    test_labels = __import__("sklearn.datasets", fromlist=["load_digits"]).load_digits().target[1400:]
    assert np.mean([str(t) == r[0] for t, r in zip(test_labels, ranked)]) > 0.9  # the likeliest first
    assert report.recipes["sk"]["oof"] > 0.9
