"""`python submit.py --new DATA_DIR`: the adapter it writes for each embedded sample (real Kaggle files), what it
guesses, what it refuses to guess (the metric), and that the written adapter loads the competition."""
from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from kitbox import cli
from kitbox.adapt.registry import get_competition

SAMPLES = Path(__file__).resolve().parents[1] / "competitions" / "samples"

EXPECTED = {  # sample folder -> (base, attributes the scaffold must write, task, target, the competition's metric)
    "rossmann-store-sales": ("TabularCompetition", "join_tables = {'store.csv': 'Store', 'store_states.csv': 'Store'}",
                             "regression", ["Sales"], "rmspe"),
    "nlp-getting-started": ("TextCompetition", None, "binary", ["target"], "f1"),
    "digit-recognizer": ("ImageCompetition", "pixel_prefix = 'pixel'", "multiclass", ["label"], "accuracy"),
    "dogs-vs-cats-redux-kernels-edition": ("ImageCompetition", r"label_pattern = '^([A-Za-z]+)[._]'", "binary",
                                           ["label"], "log_loss"),
}


@pytest.mark.parametrize("sample", sorted(EXPECTED))
def test_the_scaffold_writes_an_adapter_that_loads_each_sample(sample, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    base, attr, task, target, metric = EXPECTED[sample]
    data = tmp_path / sample
    shutil.copytree(SAMPLES / sample, data, ignore=shutil.ignore_patterns("*.py", "SOURCE.md"))
    assert cli.main(["--new", str(data)]) == 0
    printed = capsys.readouterr().out
    path = tmp_path / f"{sample.replace('-', '_')}.py"
    source = path.read_text()
    assert f"({base}):" in source and f"slug = {sample!r}" in source
    assert attr is None or attr in source
    assert 'metric_name = ""  # FILL IN' in source and "fill in metric_name" in printed
    assert f"run it: python submit.py {path.name} --data {data}" in printed
    assert f"target {target}: {task}" in printed
    assert cli.main([str(path), "--data", str(data)]) == 1  # no metric: refused before anything trains
    assert "metric_name is not set" in capsys.readouterr().err
    path.write_text(source.replace('metric_name = ""', f'metric_name = "{metric}"'))
    loaded = get_competition(str(path)).load(data)
    assert loaded.task == task and loaded.columns.target == target


def test_the_scaffold_never_overwrites_and_names_what_it_needs(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    data = tmp_path / "comp"
    data.mkdir()
    (data / "train.csv").write_text("a,b\n1,2\n")
    assert cli.main(["--new", str(data)]) == 1
    assert "no sample_submission.csv there" in capsys.readouterr().err
    shutil.copytree(SAMPLES / "nlp-getting-started", tmp_path / "tweets")
    assert cli.main(["mine.py", "--new", str(tmp_path / "tweets"), "--metric", "f1"]) == 0
    assert "metric_name = 'f1'" in (tmp_path / "mine.py").read_text()
    assert cli.main(["mine.py", "--new", str(tmp_path / "tweets")]) == 1
    assert "mine.py exists already" in capsys.readouterr().err


SCORED = {  # sample -> (built-in alias, the recipe compared, its options, how close the scaffold must come)
    # Rossmann's card adds what no scaffold can guess from the files: days to and from holidays and promotions,
    # store statistics of the training days, competition and promo2 durations; they are worth about 20 % of RMSPE
    "rossmann-store-sales": ("rossmann", "lightgbm", {"lightgbm.max_rounds": 300}, 0.25),
    "nlp-getting-started": ("disaster-tweets", "tfidf", {}, 0.10),
    "digit-recognizer": ("digits", "small_cnn", {"epochs": 3}, 0.10),
    "dogs-vs-cats-redux-kernels-edition": ("dogs-vs-cats", "linear_probe", {"size": 64}, 0.10),  # small: fast
}


@pytest.mark.slow
@pytest.mark.parametrize("sample", sorted(SCORED))
def test_the_scaffolds_adapter_scores_close_to_the_built_in_one(sample, tmp_path, monkeypatch):
    """The adapter written from the files alone (the built-in one hidden) against the hand-written recipe card:
    within 10 % of its score where the card adds no features of its own."""
    import kitbox

    monkeypatch.chdir(tmp_path)
    alias, recipe, options, tolerance = SCORED[sample]
    *_, metric = EXPECTED[sample]
    kwargs = {}
    if recipe == "linear_probe":
        from helpers.paths import shared_path

        kwargs["weights"] = shared_path("weights", "efficientnet_lite0.in1k.safetensors")
    data = tmp_path / sample
    shutil.copytree(SAMPLES / sample, data, ignore=shutil.ignore_patterns("*.py", "SOURCE.md"))
    assert cli.main(["mine.py", "--new", str(data), "--metric", metric]) == 0
    scores = {}
    for name, adapter in (("built-in", alias), ("scaffold", str(tmp_path / "mine.py"))):
        report = kitbox.run(adapter, data, recipes=recipe, options=options, folds=3 if alias != "rossmann" else None,
                            run_dir=tmp_path / "runs" / name, out=tmp_path / f"{name}.csv", progress=False,
                            log=lambda *_: None, **kwargs)
        scores[name] = report.recipes[recipe]["oof"]
    assert abs(scores["scaffold"] - scores["built-in"]) <= tolerance * abs(scores["built-in"]), scores
