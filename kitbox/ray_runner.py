"""Folds across machines: each (recipe, fold) runs as a Ray task and lands in the same run folder as a local run.

The task calls the same :func:`kitbox.cv.run_fold` a local run calls, so finished folds are skipped, a failed or
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


def _fold_task(competition, data_dir, name, fold, folds, y, run_dir, seed, options, threads):
    """Runs inside a Ray worker: load the data, train one (recipe, fold), save its files. Returns its score."""
    import torch

    from kitbox import cv

    torch.set_num_threads(threads)
    data = competition.load(Path(data_dir))
    recipe = competition.recipes()[name]
    record = cv.run_fold(name, recipe, fold, folds, data, y, competition.metric, run_dir, seed, options)
    return name, fold, record.score, record.seconds


def run_folds_on_ray(competition, data_dir, folds: np.ndarray, recipe_names, y, run_dir, only_folds=None,
                     seed: int = 42, options: dict | None = None, address: str = "auto", cpus_per_task: int = 1,
                     gpus_per_task: float = 0, log=print) -> dict[tuple[str, int], str]:
    """Submit every unfinished (recipe, fold) as a Ray task and wait for all of them.

    Returns the failures as {(recipe, fold): error}; the folds that finished are on disk either way, and a rerun
    (local or on Ray) trains only the missing ones.
    """
    from kitbox import cv

    ray = connect(address, num_cpus=None)
    task = ray.remote(num_cpus=cpus_per_task, num_gpus=gpus_per_task, max_retries=0)(_fold_task)
    n_folds = cv.n_folds_of(folds)
    wanted = range(n_folds) if only_folds is None else only_folds
    pending = {}
    for name in recipe_names:
        for fold in wanted:
            if cv.is_done(run_dir, name, fold):
                continue
            ref = task.remote(competition, str(data_dir), name, fold, folds, np.asarray(y), str(run_dir), seed,
                              dict(options or {}), max(1, int(cpus_per_task)))
            pending[ref] = (name, fold)
    log(f"Ray: {len(pending)} fold tasks submitted ({cpus_per_task} CPU, {gpus_per_task} GPU each) "
        f"to {ray.get_runtime_context().gcs_address}")
    failures, start = {}, time.time()
    while pending:
        ready, _ = ray.wait(list(pending), num_returns=1)
        name, fold = pending.pop(ready[0])
        try:
            _, _, score, seconds = ray.get(ready[0])
            log(f"[{name}] fold {fold + 1}/{n_folds}  {competition.metric.name} {score:.5f}  ({seconds:.1f} s, on Ray)")
        except Exception as e:  # a recipe error or a dead worker: keep the other folds going
            failures[(name, fold)] = f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"
            log(f"[{name}] fold {fold + 1}/{n_folds}  FAILED on Ray: {failures[(name, fold)]}")
    log(f"Ray: done in {time.time() - start:.1f} s, {len(failures)} failed")
    return failures
