"""The whole job as one Python call, ``kitbox.run(...)``, and its stages, each a function a notebook can call:

``prepare`` (find and load the data, folds, recipes and their typed options, fingerprints, checks before any
training) -> ``train`` (every recipe on every fold, resumable) -> ``blend`` (weights and decisions chosen on OOF,
scored honestly on folds they were not chosen on) -> ``write`` (the checked submission, metrics, the ledger)
-> ``submit`` (optional upload). The command line (:mod:`kitbox.cli`) is a thin layer over :func:`run`.
"""
from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Callable

import numpy as np

from kitbox.pipeline import cv, splits
from kitbox.pipeline import ensemble
from kitbox.io import fingerprint
from kitbox.adapt.contract import Competition, CompetitionData, Recipe, RunSettings, as_recipe
from kitbox.pipeline.config import RunConfig
from kitbox.adapt.options import resolve_options
from kitbox.errors import InputError
from kitbox.io.kaggle import find_data, output_dir
from kitbox.io.runs import append_ledger, save_npy, save_object, write_json

log_ = logging.getLogger("kitbox")


@dataclass
class Plan:
    """A prepared run: the loaded data, its folds and the recipes to train, each in its own fingerprinted folder."""

    competition: Competition
    data: CompetitionData
    data_dir: Path
    y: np.ndarray
    folds: np.ndarray
    only_folds: list[int] | None
    recipes: dict[str, cv.RecipePlan]
    settings: RunSettings
    seed: int
    run_dir: Path
    main_rank: bool = True  # under torchrun every rank trains; only rank 0 writes
    started: float = field(default_factory=time.time)
    log: Callable = print

    @property
    def metric(self):
        return self.competition.metric


@dataclass
class Report:
    """What a run returns: CV per recipe, the blend, the submission's path, and what to look at."""

    competition: str
    metric: str
    greater_is_better: bool
    recipes: dict[str, dict]
    run_dir: Path
    blend: dict | None = None
    submission: Path | None = None
    warnings: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    public_score: Any = None
    seconds: float = 0.0
    is_sample: bool = False
    blend_dir: Path | None = None  # the blend's folder: its submission.csv, metrics.json, CV plot
    pseudo: dict | None = None  # --pseudo-label: both rounds' honest CV and submissions

    @property
    def complete(self) -> bool:
        return self.submission is not None

    @property
    def cv_score(self) -> float | None:
        return None if self.blend is None else self.blend["score"]

    def summary(self) -> str:
        from kitbox.pipeline.summary import summary_text

        return summary_text(self)


# ---------------------------------------------------------------------------------------------- prepare


def resolve_recipes(available: dict, wanted=None) -> dict[str, Recipe]:
    """The recipes to run, in an order where every recipe comes after the ones it needs (added when missing)."""
    available = {name: as_recipe(r) for name, r in available.items()}
    names = list(available) if not wanted else [n.strip() for n in (wanted.split(",") if isinstance(wanted, str)
                                                                     else wanted) if n.strip()]
    unknown = [n for n in names if n not in available]
    if unknown:
        raise InputError(f"--recipes: unknown {unknown}; this competition has {list(available)}")
    ordered: list[str] = []

    def visit(name: str, chain: tuple) -> None:
        if name in chain:
            raise InputError(f"recipes need each other in a circle: {' -> '.join(chain + (name,))}")
        if name in ordered:
            return
        for dep in available[name].needs:
            if dep not in available:
                raise InputError(f"recipe {name!r} needs recipe {dep!r}, which this competition does not have")
            visit(dep, chain + (name,))
        ordered.append(name)

    for name in names:
        visit(name, ())
    return {name: available[name] for name in ordered}


def _folds_wanted(folds, default: int) -> tuple[int, list[int] | None]:
    """``folds``: None, a number of folds (5 or "5"), or the fold ids to run now ([0, 2] or "0,2")."""
    if folds is None or folds == "":
        return default, None
    if isinstance(folds, int):
        return folds, None
    if isinstance(folds, str):
        try:
            if "," not in folds:
                return int(folds), None
            return default, sorted({int(t) for t in folds.split(",") if t.strip()})
        except ValueError:
            raise InputError(f"--folds {folds!r}: give a number of folds (5) or a comma list of fold ids (0,2)") from None
    return default, sorted({int(k) for k in folds})


def _checked_targets(comp: Competition, data: CompetitionData) -> np.ndarray:
    y = np.asarray(comp.targets(data))
    if len(y) != len(data.train):
        raise InputError(f"{type(comp).__name__}.targets() gave {len(y)} values for {len(data.train)} training rows")
    if np.issubdtype(y.dtype, np.floating) and np.isnan(y).any():
        bad = np.flatnonzero(np.isnan(y).reshape(len(y), -1).any(1))
        raise InputError(f"the target is missing (NaN) on {len(bad)} training row(s), e.g. row(s) {bad[:5].tolist()} "
                         "of train.csv: drop those rows or fill them in the adapter's load()")
    return y


def _plans(comp, data, recipes, options, settings, seed, folds, run_dir, data_fp) -> dict[str, cv.RecipePlan]:
    """Each recipe's fingerprinted configuration folder, dependencies' hashes included."""
    typed = resolve_options(recipes, options or {})
    plans: dict[str, cv.RecipePlan] = {}
    for name, r in recipes.items():
        needs = {dep: plans[dep].config_dir for dep in r.needs}
        config = fingerprint.recipe_config(name, r, typed[name], seed=seed, settings=settings, folds=folds,
                                           data=data_fp, adapter=comp, refit=comp.refit,
                                           needs={dep: d.name for dep, d in needs.items()})
        if comp.forward_folds:  # other training rows per fold: another folder (absent otherwise: old hashes hold)
            config["forward_folds"] = True
        plans[name] = cv.RecipePlan(name, r, typed[name], config, run_dir / name / fingerprint.digest(config), needs,
                                    cache_dir=run_dir / "cache", forward=comp.forward_folds)
    return plans


def prepare(competition, data=None, config: RunConfig | None = None, *, main_rank: bool = True,
            log: Callable = print, **settings) -> Plan:
    """Everything before training, and every check that can fail before training (files, columns, options,
    weights, packages, Kaggle credentials). ``settings``: fields of :class:`RunConfig` (``folds=[0]``,
    ``quick=True``...), applied over ``config``."""
    from kitbox.adapt.registry import get_competition

    started = time.time()
    config = RunConfig.of(config, data=data, **settings)

    comp = get_competition(competition) if not isinstance(competition, Competition) else competition
    comp.metric  # noqa: B018 -- an adapter without a metric fails here, not after training
    if config.submit:
        from kitbox.io.kaggle import require_credentials

        require_credentials()
    expected = comp.expected_files() if hasattr(comp, "expected_files") else ()
    for turn in (True, False):  # under torchrun rank 0 finds (or downloads) the data first, the others then read it
        if main_rank == turn:
            data_dir, is_sample = find_data(comp.slug, config.data, comp.sample_dir,
                                            download=config.download and main_rank,
                                            log=log, expected=expected)
        _barrier()
    if config.submit and is_sample:
        raise InputError("--submit with the embedded sample: its test rows are not the competition's; get the data first")
    loaded = comp.load(Path(data_dir))
    loaded.is_sample = loaded.is_sample or is_sample
    y = _checked_targets(comp, loaded)
    if main_rank:
        loaded.notes += _shift_notes(loaded, config.seed)
    seed = config.seed
    n_folds, only_folds = _folds_wanted(config.folds, config.n_folds or comp.default_folds)
    fold_ids = splits.make_folds(lambda: comp.split(loaded, n_folds, seed), len(loaded.train))
    selected = resolve_recipes(comp.recipes(), config.recipes)
    settings = config.recipe_settings(_device_type(config.device), splits.n_folds_of(fold_ids))
    if config.from_scratch:  # a recipe made for pretrained weights says in its name, folder and summary that it had none
        selected = {f"{n}_from_scratch" if r.pretrained else n: r for n, r in selected.items()}
    run_dir = Path(config.run_dir) if config.run_dir else output_dir() / "runs" / (comp.slug + ("-sample" if loaded.is_sample else ""))
    plans = _plans(comp, loaded, selected, config.options, settings, seed, fold_ids, run_dir,
                   fingerprint.data_fingerprint(data_dir, exclude=comp.test_paths()))
    for rp in plans.values():
        rp.test_files = fingerprint.test_identity(data_dir, comp.test_paths())
    for plan in plans.values():
        if plan.recipe.preflight is not None:
            plan.recipe.preflight(loaded, settings, plan.options)
    plan = Plan(comp, loaded, Path(data_dir), y, fold_ids, only_folds, plans, settings, seed, run_dir, main_rank,
                started=started, log=log)
    if main_rank:
        _describe_configs(plan, config.fresh)
    _barrier()  # every rank sees the same finished folds before any rank trains
    n_folds_run = splits.n_folds_of(fold_ids)
    for rp in plans.values():
        rp.done_before = {k for k in [*range(n_folds_run), "refit"] if cv.is_done(rp.config_dir, k)}
    return plan


def _shift_notes(data: CompetitionData, seed: int) -> list[str]:
    """Adversarial validation on a table's input columns (train against test rows), for the summary; nothing for
    data without such columns (text, images)."""
    columns = [*data.columns.cat, *data.columns.cont]
    if not columns or len(data.test) < 10 or any(c not in data.test.columns for c in columns):
        return []
    from kitbox.tabular.shift import adversarial_validation

    return [adversarial_validation(data.train, data.test, list(data.columns.cat), list(data.columns.cont),
                                   seed=seed).note()]


def _device_type(device: str | None) -> str:
    """"cuda" or "cpu", settled once per run (CUDA when present): recipes' defaults and the fingerprint follow it,
    and each torchrun rank still trains on the GPU of its local rank."""
    from kitbox.training.device import choose_device

    try:
        return choose_device(device).type
    except RuntimeError as err:  # --device cuda on a machine without one
        raise InputError(str(err).replace("device='cpu'", "--device cpu")) from None


def _describe_configs(plan: Plan, fresh: bool) -> None:
    """Say which configurations are new (and how they differ from the newest earlier one); --fresh moves the
    matching folders aside so they train again."""
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    for name, rp in plan.recipes.items():
        if fresh and rp.config_dir.exists():
            aside = rp.config_dir.with_name(f"{rp.config_dir.name}.old-{stamp}")
            rp.config_dir.rename(aside)
            plan.log(f"--fresh: moved {rp.config_dir} aside to {aside.name}")
        if rp.config_dir.exists():
            continue
        earlier = sorted((p for p in rp.config_dir.parent.glob("*/config.json") if ".old-" not in p.parent.name),
                         key=lambda p: p.stat().st_mtime)
        if earlier:
            from kitbox.io.runs import read_json

            diff = fingerprint.differences(read_json(earlier[-1]), rp.config)
            shown = "; ".join(d for d in diff if not d.startswith(("function_source", "needs")))[:400]
            plan.log(f"[{name}] new configuration {rp.config_dir.name} (differs from {earlier[-1].parent.name}: "
                     f"{shown or 'code'}); its folds train from scratch")


# ---------------------------------------------------------------------------------------------- train


def train(plan: Plan, ray: str | None = None, ray_cpus: int = 1, ray_gpus: float = 0) -> dict[str, cv.RecipeFolds]:
    """Every recipe on every wanted fold (finished folds are reused), then the refits; folds may run on Ray."""
    if ray:
        from kitbox.pipeline.ray import run_plan_on_ray

        run_plan_on_ray(plan, address=ray, cpus_per_task=ray_cpus, gpus_per_task=ray_gpus, log=plan.log)
        for rp in plan.recipes.values():
            rp.done_before = None  # what the Ray tasks finished is on disk: look there
    results = {}
    for name, rp in plan.recipes.items():
        only = [] if ray else plan.only_folds  # on Ray the tasks trained; here only what landed is loaded
        results[name] = cv.train_recipe(rp, plan.folds, plan.data, plan.y, plan.metric, plan.seed, plan.settings,
                                        only, plan.competition.refit, plan.log if plan.main_rank else _quiet,
                                        save=plan.main_rank)
    return results


def _quiet(*args, **kwargs) -> None:
    pass


# ---------------------------------------------------------------------------------------------- blend


def blend(plan: Plan, results: dict[str, cv.RecipeFolds]) -> dict:
    """Blend weights and the competition's decisions (a cut...) chosen on all OOF rows for the submission, and
    the same procedure scored honestly: chosen on the other folds, scored on each fold's rows."""
    comp, metric = plan.competition, plan.metric
    by_rank = metric.name in ensemble.RANK_METRICS
    oofs = {name: res.oof() for name, res in results.items()}
    rows = np.logical_and.reduce([mask for _, mask in oofs.values()])
    oof_rows = {n: oof[rows] for n, (oof, _) in oofs.items()}
    y = plan.y[rows]
    groups = ensemble.holdout_groups(plan.folds[rows], plan.seed)
    blend_metric = comp.blend_metric_for(plan.data.task)
    fitted = ensemble.fit_blend(oof_rows, y, blend_metric, rank=by_rank, task=plan.data.task, groups=groups)
    blended = ensemble.apply_blend(fitted, oof_rows)
    decided = comp.decide(blended, y)
    tests = {name: cv.recipe_test_pred(res, metric) for name, res in results.items()}
    honest_pred = ensemble.nested_predictions(oof_rows, y, groups, blend_metric, comp.decide, comp.apply,
                                              rank=by_rank, task=plan.data.task)
    single = {n: float(metric(y, comp.apply(p, decided))) for n, p in oof_rows.items()}
    return {
        "metric": blend_metric.name, "method": fitted.method, "weights": fitted.weights,
        "score": float(metric(y, comp.apply(blended, decided))),  # in-sample: weights and decisions chosen on these rows
        "score_honest": float(metric(y, honest_pred)),
        "single_scores": single, "decided": decided, "rows": int(rows.sum()), "held_out": fitted.held_out,
        "test": ensemble.apply_blend(fitted, tests), "oof": blended, "fitted": fitted,
    }


# ---------------------------------------------------------------------------------------------- write


def write(plan: Plan, results: dict[str, cv.RecipeFolds], blended: dict | None, out=None,
          notes: tuple[str, ...] | list[str] = (), blended_recipes: list[str] | None = None) -> Report:
    """metrics.json, the CV plot, the checked submission (run folder copy and ``out``) and one ledger row.
    ``blended_recipes``: the recipes the blend is made of, when not all of ``results`` (a timed run)."""
    from kitbox.io.submission import degenerate_warnings, submission_rules, write_checked

    comp, metric = plan.competition, plan.metric
    report = Report(comp.slug, metric.name, metric.greater_is_better, cv.cv_report(results, plan.y, metric),
                    plan.run_dir, is_sample=plan.data.is_sample,
                    notes=[_device_note(plan.settings)] + list(plan.data.notes) + _recipe_notes(results)
                    + _importance_notes(results) + list(notes))
    if blended is None:
        return _finish(plan, report)
    names = list(plan.recipes) if blended_recipes is None else blended_recipes
    blend_dir = plan.run_dir / "blends" / fingerprint.digest({n: _blend_key(plan, results[n]) for n in names})
    save_npy(blend_dir / "test_blend.npy", blended["test"])
    pred = comp.apply(blended["test"], blended["decided"])
    table = comp.submission(plan.data, pred)
    rules = submission_rules(comp, plan.data)
    out = submission_path(comp, out)
    written = write_checked(table, [blend_dir / "submission.csv", out], plan.data, rules, type(comp).__name__)
    if "fitted" in blended:  # what --predict-only needs to make this submission again from the saved models
        save_object(blend_dir / "blend.pt", saved_blend(plan, {n: results[n] for n in names}, blended))
        record_submission(plan.run_dir, blend_dir)
    report.blend = {k: v for k, v in blended.items() if k not in ("test", "oof", "fitted")}
    report.blend["recipes"] = names
    report.submission, report.blend_dir = written[-1], blend_dir
    report.warnings = degenerate_warnings(written[-1], plan.data, metric, rules)
    cv.plot_cv(report.recipes, metric, blend_dir / "cv_scores.png", blended["score"])
    return _finish(plan, report, blend_dir)


def submission_path(comp: Competition, out=None) -> Path:
    """``--out``, else ``submission-SLUG.csv`` in the output folder (/kaggle/working in a Kaggle notebook)."""
    return Path(out) if out else output_dir() / f"submission-{comp.slug}.csv"


def saved_blend(plan: Plan, results: dict[str, cv.RecipeFolds], blended: dict) -> dict:
    """How the submission is made from the recipes' saved models: the fitted blend, the decisions, and per recipe
    its configuration folder (relative to the run folder, which may move: a Kaggle dataset) and the folds whose
    models predict test (the refit, or every finished fold)."""
    return {"competition": plan.competition.slug, "fitted": blended["fitted"], "decided": blended["decided"],
            "recipes": {n: {"config": plan.recipes[n].config_dir.relative_to(plan.run_dir).as_posix(),
                            "folds": ["refit"] if res.refit is not None else sorted(res.finished)}
                        for n, res in results.items()}}


def record_submission(run_dir: Path, blend_dir: Path) -> None:
    """Name the blend that made the run's submission (``--predict-only`` makes it again)."""
    write_json(Path(run_dir) / "submission.json", {"blend": Path(blend_dir).name})


def _blend_key(plan: Plan, res: cv.RecipeFolds) -> str:
    """What a blend folder is made of: each recipe's configuration, and (a timed run) how much of it finished, so a
    submission from fewer folds or without the refits never replaces a whole run's."""
    key = plan.recipes[res.name].config_dir.name
    if res.missing:
        key += f":folds {sorted(res.finished)}"
    if plan.competition.refit and res.refit is None:
        key += ":no refit"
    return key


def _device_note(settings: RunSettings) -> str:
    """Where the models trained and in what precision (the Learner's own choice for a conv net)."""
    import torch

    from kitbox.training.device import choose

    conv = torch.nn.Conv2d(1, 1, 1)  # a stand-in: channels_last applies to conv nets on CUDA
    return f"device: {choose(conv, settings.device, compile=settings.compile).describe()}"


def _recipe_notes(results: dict[str, cv.RecipeFolds]) -> list[str]:
    """What a recipe says about its folds in ``info``: where its pretrained weights came from (``"weights"``) and
    where and in what precision it trained when its own option chose that (``"precision"``)."""
    notes = []
    for key, says in (("weights", "pretrained weights from"), ("precision", "trained on")):
        for name, res in results.items():
            found = sorted({str(f.info[key]) for f in res.finished.values() if f.info.get(key)})
            if found:
                notes.append(f"{name}: {says} {', '.join(found)}")
    return notes


def _importance_notes(results: dict[str, cv.RecipeFolds], top: int = 5) -> list[str]:
    """The columns a recipe's predictions lean on most, from its folds' permutation importance (``info["importance"]``:
    the loss increase on validation rows when a column is shuffled), averaged over the folds."""
    notes = []
    for name, res in results.items():
        found = [f.info["importance"] for f in res.finished.values() if f.info.get("importance")]
        if found:
            columns = {c for imp in found for c in imp}
            mean = {c: float(np.mean([imp.get(c, 0.0) for imp in found])) for c in columns}
            best = sorted(mean.items(), key=lambda kv: -kv[1])[:top]
            notes.append(f"{name}: permutation importance (loss increase with the column shuffled, validation rows): "
                         + ", ".join(f"{c} {v:+.4f}" for c, v in best))
    return notes


def _finish(plan: Plan, report: Report, blend_dir: Path | None = None) -> Report:
    report.seconds = time.time() - plan.started
    metrics = {
        "competition": report.competition, "metric": report.metric, "greater_is_better": report.greater_is_better,
        "is_sample": report.is_sample, "n_folds": plan.settings.n_folds, "seed": plan.seed,
        "recipes": report.recipes, "configs": {n: str(rp.config_dir) for n, rp in plan.recipes.items()},
        "blend": report.blend, "submission": str(report.submission) if report.submission else None,
        "warnings": report.warnings, "notes": report.notes, "seconds": report.seconds,
        "test_predictions": "refit on all rows" if plan.competition.refit else "mean of the folds' models",
    }
    write_json((blend_dir or plan.run_dir) / "metrics.json", metrics)
    if report.complete:
        append_ledger(plan.run_dir.parent / "ledger.jsonl", {
            "time": datetime.now().isoformat(timespec="seconds"), "competition": report.competition,
            "run_dir": str(plan.run_dir), "seed": plan.seed, "quick": plan.settings.quick,
            "configs": {n: plan.recipes[n].config_dir.name for n in report.blend["recipes"]},
            "options": {n: fingerprint.options_dict(rp.options) for n, rp in plan.recipes.items()},
            "cv": {n: r.get("oof") for n, r in report.recipes.items()}, "blend": report.blend["score"],
            "blend_honest": report.blend["score_honest"], "metric": report.metric,
            "submission": str(report.submission), "public_score": None,
        })
    return report


def submit(plan: Plan, report: Report, message: str | None = None) -> Report:
    """Upload the checked submission and wait for the public score (kept in the report and the ledger)."""
    from kitbox.io.kaggle import submit as kaggle_submit
    from kitbox.io.runs import update_last_ledger_row

    names = "+".join(plan.recipes)
    message = message or f"kitbox {names} CV {report.metric} {report.cv_score:.5f}"
    report.public_score = kaggle_submit(plan.competition.slug, report.submission, message, log=plan.log)
    update_last_ledger_row(plan.run_dir.parent / "ledger.jsonl", public_score=report.public_score)
    return report


# ---------------------------------------------------------------------------------------------- run


def run(competition, data=None, config: RunConfig | None = None, *, log: Callable = print, **settings) -> Report:
    """Train every recipe with k-fold CV, blend them on OOF, write a checked submission; return the report.

    ``competition``: a :class:`Competition` instance, a slug or alias, ``"path/to/file.py[:Class]"`` or
    ``"module:Class"``. ``data``: the folder with the competition's files (default: ./data/SLUG,
    /kaggle/input/SLUG, a Kaggle download when credentials exist, else the embedded sample). ``folds``: a number
    of folds, or fold ids to run now (a later call finishes the rest); ``n_folds`` with a list of ids. ``options``: recipe options,
    ``{"epochs": 3}`` for every recipe that has them or ``{"cnn.lr": 1e-3}`` for one. Every keyword is a field of
    :class:`kitbox.pipeline.config.RunConfig` (the command line's flags are generated from it); ``config`` gives
    them all at once, and keywords change it.
    """
    config = RunConfig.of(config, data=data, **settings)
    if config.predict_only:
        from kitbox.pipeline.predict import predict_only

        return predict_only(competition, config, log=log)
    rank, joined = _join_torchrun()
    plan = prepare(competition, config=config, main_rank=rank == 0, log=log if rank == 0 else _quiet)
    if config.pseudo_label is None and plan.competition.pseudo_label is not None:  # the adapter's default
        config = RunConfig.of(config, pseudo_label=plan.competition.pseudo_label)
    if config.pseudo_label is not None:  # before any training
        from kitbox.pipeline.pseudo import check_threshold

        check_threshold(config.pseudo_label)
    if config.ray and rank:
        raise InputError("--ray runs whole folds as tasks; do not combine it with torchrun")
    if config.time_limit is not None and config.pseudo_label is not None:
        raise InputError("--pseudo-label (or the adapter's pseudo_label) needs every recipe's folds: leave out "
                         "--time-limit, or run twice")
    if config.time_limit is not None and (config.ray or joined or rank):
        raise InputError("--time-limit plans the folds in this one process: leave out --ray and torchrun")
    if config.time_limit is not None:
        from kitbox.pipeline.budget import train_in_time

        timed = train_in_time(plan, config.time_limit)
        results, names, notes = timed.results, timed.blended, timed.notes
    else:
        results = train(plan, config.ray, config.ray_cpus, config.ray_gpus)
        names, notes = list(results) if all(res.complete for res in results.values()) else None, []
    if rank:
        _leave_torchrun(joined)  # waits there while rank 0 blends and writes
        return Report(plan.competition.slug, plan.metric.name, plan.metric.greater_is_better, {}, plan.run_dir)
    blended = None if names is None else blend(plan, {n: results[n] for n in names})
    report = write(plan, results, blended, config.out, notes, names)
    if config.pseudo_label is not None and report.complete:
        report = pseudo_round(plan, results, blended, report, config)
    if config.submit and report.complete:
        submit(plan, report, config.message)
    _leave_torchrun(joined)
    return report


def pseudo_round(plan: Plan, results: dict[str, cv.RecipeFolds], blended: dict, report: Report,
                 config: RunConfig) -> Report:
    """The pseudo-labelled second round (:mod:`kitbox.pipeline.pseudo`); its submission replaces the first
    round's only when its honest CV is better."""
    from kitbox.pipeline.pseudo import second_round

    plan2, note = second_round(plan, results, blended, config.pseudo_label)
    plan.log(note)
    if all(len(rows) == 0 for rows in plan2.recipes[next(iter(plan2.recipes))].pseudo.rows.values()):
        report.notes += [note + ": no second round"]
        return report
    results2 = train(plan2)
    blended2 = blend(plan2, results2)
    before, after = blended["score_honest"], blended2["score_honest"]
    wins = after > before if plan.metric.greater_is_better else after < before
    own = plan.run_dir / f"submission-{plan.competition.slug}-pseudo-label.csv"  # the round's own, whichever wins
    verdict = (f"honest CV {before:.5f} without pseudo-labels, {after:.5f} with: the submission is the "
               f"{'pseudo-labelled round' if wins else 'first round (kept)'}; the pseudo-labelled one is also in {own}")
    plan.log(verdict)
    report2 = write(plan2, results2, blended2, own, [note, verdict])
    rounds = {"honest_before": before, "honest_after": after, "wins": wins,
              "first_submission": report.blend_dir / "submission.csv", "pseudo_submission": own}
    report.pseudo = report2.pseudo = rounds
    if not wins:
        record_submission(plan.run_dir, report.blend_dir)  # the first round's blend made the submission
        report.notes += [note, verdict]
        report.seconds = time.time() - plan.started  # both rounds
        return report
    from kitbox.io.runs import atomic_write_bytes

    out = submission_path(plan.competition, config.out)
    report2.submission = atomic_write_bytes(out, own.read_bytes())  # checked when it was written
    return report2


def _barrier() -> None:
    """Wait for every torchrun rank (a no-op in a plain run)."""
    if "RANK" not in os.environ:
        return
    from kitbox.training import distributed

    if distributed.is_distributed():
        import torch.distributed as dist

        dist.barrier()


def _join_torchrun() -> tuple[int, bool]:
    """Under ``torchrun`` join the process group: (this process's rank, whether this call created the group);
    (0, False) in a plain run."""
    if "RANK" not in os.environ or "WORLD_SIZE" not in os.environ:
        return 0, False
    from kitbox.training import distributed

    created = not distributed.is_distributed()
    distributed.init_from_env()
    return distributed.rank(), created


def _leave_torchrun(joined: bool) -> None:
    """Leave the process group this run created (one the caller made stays theirs)."""
    if joined:
        from kitbox.training import distributed

        distributed.shutdown()
