"""--pseudo-label: a second round where each fold also trains on the test rows its own first-round models
predicted confidently, never on them as validation rows; the better honest CV makes the submission."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

import kitbox
from helpers.sk_competition import SkDigits, logreg_recipe
from kitbox.errors import InputError
from kitbox.io.runs import load_npy, read_json
from kitbox.pipeline import pseudo

SEEN = []  # (round's config folder, fold, train_idx, the targets of those rows) for every fold the spy trains


def spy_logreg(ctx):
    SEEN.append((ctx.fold_dir.parent.name, ctx.fold, ctx.train_idx.copy(), np.asarray(ctx.y)[ctx.train_idx]))
    x_train = ctx.data.train[[c for c in ctx.data.train.columns if c.startswith("pixel")]].to_numpy() / 16.0
    from sklearn.linear_model import LogisticRegression
    from threadpoolctl import threadpool_limits

    with threadpool_limits(1):
        model = LogisticRegression(solver="newton-cg", max_iter=100).fit(x_train[ctx.train_idx], ctx.y[ctx.train_idx])
    x_test = ctx.data.test[[c for c in ctx.data.test.columns if c.startswith("pixel")]].to_numpy() / 16.0
    return kitbox.FoldPredictions(oof=model.predict_proba(x_train[ctx.valid_idx]), test=model.predict_proba(x_test))


def test_each_fold_trains_on_its_own_confident_test_rows_and_never_validates_on_them(tmp_path):
    SEEN.clear()
    comp = SkDigits({"logreg": spy_logreg})
    comp.load(tmp_path / "data")
    report = kitbox.run(comp, data=tmp_path / "data", run_dir=tmp_path / "runs", pseudo_label=0.9,
                        out=tmp_path / "sub.csv", progress=False, log=lambda *_: None)
    n_train, n_test = 1437, 360
    first = {fold: (idx, y) for _, fold, idx, y in SEEN if idx.max() < n_train}
    second = {fold: (idx, y) for _, fold, idx, y in SEEN if idx.max() >= n_train}
    assert sorted(first) == sorted(second) == [0, 1, 2, 3, 4]

    folders = {("pseudo_label" in read_json(d / "config.json")): d for d in (tmp_path / "runs" / "logreg").iterdir()}
    for fold in range(5):
        idx, y = second[fold]
        valid = load_npy(folders[True] / f"fold{fold}" / "valid_idx.npy")
        assert np.array_equal(valid, load_npy(folders[False] / f"fold{fold}" / "valid_idx.npy"))
        assert np.array_equal(idx[idx < n_train], first[fold][0])  # the same labelled rows as the first round
        assert not set(valid) & set(idx)  # validation rows never train
        # the pseudo rows: exactly the test rows fold k's own first-round model predicted with p >= 0.9
        rows, labels = pseudo.confident(load_npy(folders[False] / f"fold{fold}" / "test.npy"), "multiclass", 0.9)
        assert np.array_equal(idx[idx >= n_train] - n_train, rows) and np.array_equal(y[idx >= n_train], labels)
        assert 0 < len(rows) < n_test
        assert read_json(folders[True] / f"fold{fold}" / "done.json")["n_train"] == len(first[fold][0]) + len(rows)
    assert any("honest CV" in n and "with:" in n for n in report.notes)
    assert any(n.startswith("pseudo-labels: test rows predicted with confidence >= 0.9") for n in report.notes)
    assert len(pd.read_csv(report.submission)) == n_test
    # both rounds' submissions are kept; the one with the better honest CV is the run's
    rounds = report.pseudo
    assert rounds["wins"] == (rounds["honest_after"] > rounds["honest_before"])
    chosen = rounds["pseudo_submission"] if rounds["wins"] else rounds["first_submission"]
    assert report.submission.read_bytes() == chosen.read_bytes()
    assert len(pd.read_csv(rounds["pseudo_submission"])) == len(pd.read_csv(rounds["first_submission"])) == n_test


def test_confident_rows_and_their_labels():
    binary = np.array([0.99, 0.5, 0.02, 0.9])
    rows, labels = pseudo.confident(binary, "binary", 0.95)
    assert rows.tolist() == [0, 2] and labels.tolist() == [1, 0]
    multi = np.array([[0.96, 0.02, 0.02], [0.4, 0.3, 0.3], [0.0, 0.01, 0.99]])
    rows, labels = pseudo.confident(multi, "multiclass", 0.95)
    assert rows.tolist() == [0, 2] and labels.tolist() == [0, 2]
    with pytest.raises(InputError, match="binary or multiclass target"):
        pseudo.confident(np.array([1.5, 2.0]), "regression", 0.9)


def test_a_bad_confidence_is_one_clear_error(tmp_path):
    comp = SkDigits({"logreg": logreg_recipe})
    comp.load(tmp_path / "data")
    with pytest.raises(InputError, match=r"--pseudo-label 1\.5: give the confidence"):
        kitbox.run(comp, data=tmp_path / "data", run_dir=tmp_path / "runs", pseudo_label=1.5, out=tmp_path / "s.csv",
                   progress=False, log=lambda *_: None)


def test_an_adapter_can_make_it_its_default(tmp_path):
    comp = type("PseudoDigits", (SkDigits,), {"pseudo_label": 0.9})({"logreg": spy_logreg})
    comp.load(tmp_path / "data")
    report = kitbox.run(comp, data=tmp_path / "data", run_dir=tmp_path / "runs", out=tmp_path / "s.csv",
                        progress=False, log=lambda *_: None)
    assert report.pseudo is not None and report.pseudo["pseudo_submission"].exists()
