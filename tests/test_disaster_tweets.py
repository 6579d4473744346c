"""Disaster Tweets as a recipe card: reading the files, the text columns, stratified folds, the F1 cut chosen on
OOF by the base, odd bytes and rows noted, and the whole pipeline on the embedded sample by slug."""
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import kitbox
from competitions.disaster_tweets import DisasterTweets
from kitbox.errors import InputError
from kitbox.metrics import best_f1_cut, f1

from helpers.paths import shared_path

COMP = DisasterTweets()


@pytest.fixture(scope="module")
def sample():
    return COMP.load(COMP.sample_dir)


def write_files(folder: Path, train: pd.DataFrame, sample) -> None:
    train.to_csv(folder / "train.csv", index=False)
    sample.test.to_csv(folder / "test.csv", index=False)
    sample.sample_submission.to_csv(folder / "sample_submission.csv", index=False)


def test_sample_loads_as_a_text_competition(sample):
    assert sample.is_sample and sample.task == "binary" and sample.classes == [0, 1]
    assert sample.columns.text == ["keyword", "location", "text"] and sample.columns.id == "id"
    assert list(sample.sample_submission.columns) == ["id", "target"]
    assert set(sample.sample_submission["id"]) == set(sample.test["id"].astype(str))
    assert not sample.train["keyword"].str.contains("%20", na=False).any()  # "nuclear%20reactor" -> "nuclear reactor"
    assert (COMP.sample_dir / "SOURCE.md").is_file()


def test_the_adapter_is_a_recipe_card():
    source = Path(__import__("competitions.disaster_tweets").disaster_tweets.__file__).read_text()
    assert len(source.splitlines()) <= 150
    assert "threshold" not in source and "run_dir" not in source  # the base decides the cut; no folder walking
    assert set(COMP.recipes()) == {"tfidf", "sentence_vectors", "transformer", "ulmfit"}


def test_real_files_load():
    data = COMP.load(shared_path("data", "nlp-getting-started"))
    assert not data.is_sample and len(data.train) > 1000 and "target" not in data.test.columns
    assert len(data.sample_submission) == len(data.test) and not data.notes


def test_bad_target_and_missing_file_say_what_to_do(tmp_path, sample):
    with pytest.raises(InputError, match="not found.*pass --data DIR"):
        COMP.load(tmp_path)
    bad = sample.train.copy()
    bad.loc[bad.index[3], "target"] = 2
    write_files(tmp_path, bad, sample)
    with pytest.raises(InputError, match="'target' must be 0 or 1"):
        COMP.load(tmp_path)


def test_non_utf8_bytes_and_empty_rows_are_noted_not_fatal(tmp_path, sample):
    train = sample.train.head(30).copy()
    train.loc[train.index[5], ["keyword", "location", "text"]] = None
    raw = train.to_csv(index=False).encode("utf-8").replace(b"fire", b"f\xffre")
    (tmp_path / "train.csv").write_bytes(raw)
    sample.test.to_csv(tmp_path / "test.csv", index=False)
    sample.sample_submission.to_csv(tmp_path / "sample_submission.csv", index=False)
    data = COMP.load(tmp_path)
    assert data.train["text"].str.contains("\ufffd", na=False).any()
    notes = " ".join(data.notes)
    assert "not UTF-8" in notes and "1 row(s) with no text" in notes and "[5]" in notes


def test_folds_are_stratified(sample):
    folds = COMP.split(sample, 5, seed=42)
    rate = sample.train["target"].mean()
    per_fold = [sample.train["target"][folds == k].mean() for k in range(5)]
    assert set(folds) == set(range(5)) and np.allclose(per_fold, rate, atol=0.03)


def test_duplicate_key_sets_aside_links_names_case_and_punctuation():
    from kitbox.text.tokenizer import duplicate_key

    a = duplicate_key("Forest fire near La Ronge Sask. Canada http://t.co/abc @bob")
    assert a == duplicate_key("forest fire near la ronge sask canada!! https://t.co/xyz") == \
        "forest fire near la ronge sask canada"
    assert duplicate_key("fire &amp; smoke") == duplicate_key("Fire & smoke") == "fire smoke"  # HTML entities decoded
    assert duplicate_key("#earthquake now") != duplicate_key("earthquake now")  # hashtags are words of their own
    assert duplicate_key(None) == duplicate_key(float("nan")) == ""


def test_grouped_duplicates_never_straddle_folds(tmp_path, sample):
    train = sample.train.copy()
    copies = train.head(40).copy()  # reposts: the same text with a link added and another case
    copies["text"] = [t.upper() + " http://t.co/repost" for t in copies["text"]]
    copies["id"] = [f"{i}9999" for i in copies["id"]]
    write_files(tmp_path, pd.concat([train, copies], ignore_index=True), sample)

    class Grouped(DisasterTweets):
        group_duplicates = True

    data = Grouped().load(tmp_path)
    folds = Grouped().split(data, 5, seed=42)
    n = len(train)
    assert np.array_equal(folds[:40], folds[n:n + 40])  # each copy sits in its original's fold
    plain = COMP.split(COMP.load(tmp_path), 5, seed=42)
    assert not np.array_equal(plain[:40], plain[n:n + 40])  # without grouping, copies land in other folds
    rate = data.train["target"].mean()  # still stratified
    assert np.allclose([data.train["target"][folds == k].mean() for k in range(5)], rate, atol=0.04)


def test_the_f1_cut_is_decided_on_oof_and_applied(sample):
    rng = np.random.default_rng(0)
    y = COMP.targets(sample)
    # probabilities that separate the classes around 0.3, not 0.5: a fixed 0.5 cut would lose most positives
    oof = np.where(y == 1, rng.uniform(0.3, 0.45, len(y)), rng.uniform(0.0, 0.2, len(y)))
    decided = COMP.decide(oof, y)
    assert decided["cut"] == best_f1_cut(y, oof)[0] and 0.2 <= decided["cut"] <= 0.3 and f1(y, oof) < 0.5
    assert f1(y, COMP.apply(oof, decided)) == 1.0
    test_pred = np.linspace(0, 1, len(sample.test))
    sub = COMP.submission(sample, COMP.apply(test_pred, decided))
    assert list(sub.columns) == ["id", "target"] and set(sub["target"]) <= {0, 1}
    by_id = pd.Series(test_pred, index=sample.test["id"].astype(str))
    assert np.array_equal(sub["target"].to_numpy(), (by_id.loc[sub["id"]].to_numpy() >= decided["cut"]).astype(int))


def test_the_pipeline_runs_by_slug_on_the_sample(tmp_path):
    report = kitbox.run("disaster-tweets", None, recipes="tfidf", folds=2, quick=True, run_dir=tmp_path / "run",
                        out=tmp_path / "submission.csv", progress=False, log=lambda *a: None)
    assert report.is_sample and report.complete and "cut" in report.blend["decided"]
    sub = pd.read_csv(report.submission, dtype=str)
    assert list(sub.columns) == ["id", "target"] and set(sub["target"]) <= {"0", "1"}
    assert "honest" in report.summary()


def test_the_summary_scores_every_recipe_at_the_submissions_cut_and_says_where_it_ran(tmp_path):
    """Each recipe's F1 is printed at the cut the submission uses (not only at 0.5), beside the device note."""
    report = kitbox.run("disaster-tweets", None, n_folds=2, recipes="tfidf", run_dir=tmp_path / "run",
                        out=tmp_path / "sub.csv", progress=False, log=lambda *a: None)
    text = report.summary()
    line = next(ln for ln in text.splitlines() if ln.strip().startswith("tfidf"))
    cut_score = float(line.split("at the submission's decision")[1].split()[0])
    assert 0 < cut_score <= 1 and "decided on OOF: cut" in text
    assert "note: device: cpu, fp32" in text and report.submission.exists()
