"""Inference only (``submit.py SLUG --predict-only --models RUN_DIR --data DIR``): the saved models of a finished
run predict a test table they have never seen, and the same blend and decisions make the checked submission.

This is a Kaggle code competition's scoring notebook: internet off, the run folder attached as a dataset, the
hidden test set swapped in for the public one. Nothing trains. Every fold saves its fitted model
(``predictor.pt``: the fold's features, preprocessing and weights, whose ``predict(data)`` gives the test
prediction), and every blend its fitted weights or stacker and decisions (``blends/HASH/blend.pt``);
``submission.json`` names the blend that made the run's submission.
"""
from __future__ import annotations

import time
from pathlib import Path
from typing import Callable

import numpy as np

from kitbox.errors import InputError
from kitbox.pipeline import cv, ensemble
from kitbox.pipeline.config import RunConfig

NOT_WITH = ("folds", "time_limit", "pseudo_label", "ray", "fresh", "submit", "download")  # settings of training


def find_blend(models) -> Path:
    """The blend folder a run folder's submission came from (``submission.json``), or ``models`` itself when it is
    a blend folder."""
    from kitbox.io.runs import read_json

    models = Path(models).expanduser()
    if (models / "blend.pt").is_file():
        return models
    pointer = models / "submission.json"
    if pointer.is_file():
        blend_dir = models / "blends" / read_json(pointer)["blend"]
        if (blend_dir / "blend.pt").is_file():
            return blend_dir
        raise InputError(f"{pointer} names the blend {blend_dir}, which has no blend.pt: copy the whole run folder")
    if not models.is_dir():
        raise InputError(f"--models {models}: no such folder; give the run folder a training run wrote (runs/SLUG, "
                         "printed in its summary), e.g. attached to a Kaggle notebook as a dataset")
    raise InputError(f"--models {models}: no submission.json or blend.pt there; give the run folder of a finished "
                     "run (one that wrote a submission), or one of its blends/HASH folders")


def recipe_tests(saved: dict, run_dir: Path, data, device: str | None, rank: bool, log: Callable = print,
                 trusted: tuple[str, ...] = ()) -> dict[str, np.ndarray]:
    """Each blended recipe's test prediction from its saved models: the refit's, or the mean of its folds' (ranks
    for a rank metric), as in the training run."""
    lacking = {}
    for name, entry in saved["recipes"].items():
        config_dir = run_dir / entry["config"]
        absent = [cv.fold_name(f) for f in entry["folds"] if not cv.predictor_path(config_dir, f).is_file()]
        if absent:
            lacking[name] = absent
    if lacking:
        shown = "; ".join(f"{n}: {', '.join(folds)}" for n, folds in lacking.items())
        raise InputError(f"no saved model (predictor.pt) for {shown} in {run_dir}: every built-in recipe saves one; "
                         "a recipe of your own does when its FoldPredictions has a predictor (an object whose "
                         "predict(data) gives the test prediction). Copy the whole run folder, or train again")
    tests = {}
    for name, entry in saved["recipes"].items():
        config_dir, start = run_dir / entry["config"], time.time()
        preds = []
        for fold in entry["folds"]:
            pred = np.asarray(cv.load_predictor(config_dir, fold, device, trusted).predict(data))
            if pred.ndim == 0 or len(pred) != len(data.test):
                raise InputError(f"{name} {cv.fold_name(fold)}: its saved model predicted {pred.shape} for "
                                 f"{len(data.test)} test rows")
            preds.append(pred)
        single = entry["folds"] == ["refit"]
        tests[name] = (np.asarray(preds[0], dtype=np.float64) if single
                       else ensemble.fold_mean(preds, rank=rank))
        log(f"[{name}] predicted {len(data.test)} test rows with {'the refit' if single else f'{len(preds)} fold'} "
            f"model{'' if single else 's'} ({time.time() - start:.1f} s)")
    return tests


def predict_only(competition, config: RunConfig, log: Callable = print):
    """The submission of ``config.models``' saved run for the test files of ``config.data``; returns the Report."""
    from kitbox.adapt.contract import Competition, as_recipe
    from kitbox.adapt.registry import get_competition
    from kitbox.io.kaggle import find_data, output_dir
    from kitbox.io.runs import load_object, read_json
    from kitbox.io.submission import degenerate_warnings, submission_rules, write_checked
    from kitbox.pipeline.stages import Report, _device_type, submission_path

    started = time.time()
    given = [f"--{name.replace('_', '-')}" for name in NOT_WITH if getattr(config, name) not in (None, False, "")]
    if given:
        raise InputError(f"--predict-only trains nothing: leave out {', '.join(given)}")
    comp = get_competition(competition) if not isinstance(competition, Competition) else competition
    expected = comp.expected_files() if hasattr(comp, "expected_files") else ()
    data_dir, is_sample = find_data(comp.slug, config.data, comp.sample_dir, download=False, log=log,
                                    expected=expected)
    data = comp.load(Path(data_dir))
    data.is_sample = data.is_sample or is_sample
    default_runs = output_dir() / "runs" / (comp.slug + ("-sample" if data.is_sample else ""))
    blend_dir = find_blend(config.models or config.run_dir or default_runs)
    saved = load_object(blend_dir / "blend.pt", (type(comp).__module__,))
    if saved["competition"] != comp.slug:
        raise InputError(f"{blend_dir} is a run of {saved['competition']!r}, not {comp.slug!r}")
    run_dir = blend_dir.parent.parent
    log(f"--predict-only: the saved models of {blend_dir} predict the test files of {data_dir}")
    # a competitor's predictor classes may live beside their recipes (the adapter's module): those modules only
    trusted = tuple({as_recipe(r).fn.__module__ for r in comp.recipes().values()})
    rank = comp.metric.name in ensemble.RANK_METRICS  # a rank metric (AUC) averages the folds' ranks, as in training
    tests = recipe_tests(saved, run_dir, data, _device_type(config.device), rank, log, trusted)
    pred = comp.apply(ensemble.apply_blend(saved["fitted"], tests), saved["decided"])
    table = comp.submission(data, pred)
    rules = submission_rules(comp, data)
    out = submission_path(comp, config.out)
    written = write_checked(table, [out], data, rules, type(comp).__name__)
    trained = read_json(blend_dir / "metrics.json")
    metric = comp.metric
    report = Report(comp.slug, metric.name, metric.greater_is_better, trained["recipes"], run_dir,
                    blend=trained["blend"], submission=written[-1], is_sample=data.is_sample, blend_dir=blend_dir,
                    notes=[f"predict-only: no training; the CV figures are the training run's ({blend_dir}), the "
                           f"test predictions are new, for the {len(data.test)} rows of {data_dir}"])
    report.warnings = degenerate_warnings(written[-1], data, metric, rules)
    report.seconds = time.time() - started
    return report
