"""Folds across machines: each (recipe, fold) runs as a Ray task and lands in the same run folder as a local run.

The task calls the same :func:`kitbox.pipeline.cv.run_fold` a local run calls, so finished folds are skipped, a failed or
killed task loses only its own fold, and resume, ensembling and the submission stage work unchanged. Ray is an
optional extra: ``pip install "kitbox[ray]"``.
"""
from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import numpy as np


class RayUnavailable(RuntimeError):
    pass


def _import_ray():
    try:
        import ray
    except ImportError:
        raise RayUnavailable(
            "--ray needs Ray, an optional extra: pip install \"kitbox[ray]\" (or pip install \"ray[default]\")"
        ) from None
    return ray


def connect(address: str = "auto", num_cpus: int | None = None):
    """Join the Ray cluster at ``address`` ("auto": the one this machine belongs to, else start a local one;
    "local": always start a local one). Workers get the driver's import path so adapters import the same way."""
    ray = _import_ray()
    if ray.is_initialized():
        return ray
    env = {"env_vars": {"PYTHONPATH": os.pathsep.join(p for p in sys.path if p)}}
    common = dict(runtime_env=env, include_dashboard=False, log_to_driver=True, configure_logging=False)
    if address == "local":
        ray.init(num_cpus=num_cpus, **common)
        return ray
    try:
        ray.init(address=address, **common)
    except ConnectionError as e:
        if address != "auto":
            raise RayUnavailable(f"no Ray cluster answers at {address!r} ({e}); start one with `ray start --head` "
                                 "or use --ray local") from None
        ray.init(num_cpus=num_cpus, **common)  # no cluster running here: start a local one
    return ray


def _fold_task(competition, data_dir, plan, fold, folds, y, seed, settings, threads, scored_info):
    """Runs inside a Ray worker: load the data, train one (recipe, fold or refit), save its files."""
    import torch

    from kitbox.pipeline import cv

    torch.set_num_threads(threads)
    data = competition.load(Path(data_dir))
    record = cv.run_fold(plan, fold, folds, data, y, competition.metric, seed, settings, scored_info)
    return plan.name, fold, record.score, record.seconds


def _pickle_adapter_by_value(ray, competition) -> None:
    """An adapter loaded from a file lives in a module workers cannot import: ship its code with the task."""
    module = sys.modules.get(type(competition).__module__)
    if module is not None and module.__name__.startswith("kitbox_adapter_"):
        ray.cloudpickle.register_pickle_by_value(module)


def _levels(plans) -> list[list[str]]:
    """Recipes grouped so each group needs only recipes of earlier groups."""
    level: dict[str, int] = {}
    for name, plan in plans.items():  # plans are in dependency order already
        level[name] = 1 + max((level[d] for d in plan.recipe.needs), default=-1)
    return [[n for n in plans if level[n] == k] for k in range(max(level.values(), default=-1) + 1)]


def _wait(ray, pending: dict, n_folds: int, metric_name: str, log) -> dict:
    failures = {}
    while pending:
        ready, _ = ray.wait(list(pending), num_returns=1)
        name, fold = pending.pop(ready[0])
        tag = f"[{name}] " + ("refit" if fold == "refit" else f"fold {fold + 1}/{n_folds}")
        try:
            _, _, score, seconds = ray.get(ready[0])
            shown = "" if score is None else f"{metric_name} {score:.5f}  "
            log(f"{tag}  {shown}({seconds:.1f} s, on Ray)")
        except Exception as e:  # a recipe error or a dead worker: keep the other folds going
            failures[(name, fold)] = f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"
            log(f"{tag}  FAILED on Ray: {failures[(name, fold)]}")
    return failures


def _todo(plan, rp, stage: str, wanted, n_folds: int) -> tuple[list, dict]:
    """The folds of one recipe still to train at this stage, and (for the refit) the scored folds' info."""
    from kitbox.pipeline import cv

    if stage == "folds":
        return [k for k in wanted if not cv.is_done(rp.config_dir, k)], {}
    every_fold = all(cv.is_done(rp.config_dir, k) for k in range(n_folds))
    if not (plan.competition.refit and plan.only_folds is None and every_fold) or cv.is_done(rp.config_dir, "refit"):
        return [], {}
    return ["refit"], {k: cv.load_fold(rp.config_dir, k, plan.folds).info for k in range(n_folds)}


def run_plan_on_ray(plan, address: str = "auto", cpus_per_task: int = 1, gpus_per_task: float = 0,
                    log=print) -> dict:
    """Every unfinished (recipe, fold) of a prepared run as a Ray task, recipes that others need first; then the
    refits. Returns the failures as {(recipe, fold): error}; finished folds are on disk either way, and a rerun
    (local or on Ray) trains only the missing ones."""
    from kitbox.pipeline import splits

    ray = connect(address, num_cpus=None)
    _pickle_adapter_by_value(ray, plan.competition)
    task = ray.remote(num_cpus=cpus_per_task, num_gpus=gpus_per_task, max_retries=0)(_fold_task)
    n_folds, start, failures = splits.n_folds_of(plan.folds), time.time(), {}
    wanted = range(n_folds) if plan.only_folds is None else plan.only_folds
    for names in _levels(plan.recipes):
        for stage in ("folds", "refit"):  # a recipe's refit reads its folds' info, a dependent reads its outputs
            pending = {}
            for name in names:
                rp = plan.recipes[name]
                todo, info = _todo(plan, rp, stage, wanted, n_folds)
                for fold in todo:
                    ref = task.remote(plan.competition, str(Path(plan.data_dir).resolve()), rp, fold, plan.folds,
                                      np.asarray(plan.y), plan.seed, plan.settings, max(1, int(cpus_per_task)), info)
                    pending[ref] = (name, fold)
            if pending:
                log(f"Ray: {len(pending)} task(s) submitted ({cpus_per_task} CPU, {gpus_per_task} GPU each) to "
                    f"{ray.get_runtime_context().gcs_address}")
            failures.update(_wait(ray, pending, n_folds, plan.metric.name, log))
    log(f"Ray: done in {time.time() - start:.1f} s, {len(failures)} failed")
    return failures
