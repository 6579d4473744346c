"""Benchmark (run by hand): a 4-fold run, sequential with 2 torch threads vs 2 Ray workers with 1 thread each.

    python bench/bench_ray.py digit-recognizer          # embedded sample unless --data is given
    python bench/bench_ray.py rossmann --data ../shared/data/rossmann-store-sales

Both runs use the same folds and seeds, in fresh run folders; it prints both wall times and their ratio.
"""
from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from competitions import get_competition
from kitbox import cv
from kitbox.kaggle import find_data
from kitbox.ray_runner import connect, run_folds_on_ray


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("competition")
    parser.add_argument("--data")
    parser.add_argument("--folds", type=int, default=4)
    parser.add_argument("--recipe", help="one recipe (default: the competition's first)")
    args = parser.parse_args()

    comp = get_competition(args.competition)
    data_dir, is_sample = find_data(comp.slug, args.data, comp.sample_dir)
    data = comp.load(data_dir)
    y = np.asarray(comp.targets(data))
    folds = cv.check_folds(comp.split(data, args.folds, 42), len(data.train))
    name = args.recipe or next(iter(comp.recipes()))
    options = {"quick": False, "seed": 42, "n_folds": cv.n_folds_of(folds)}
    print(f"{comp.slug} ({'sample' if is_sample else data_dir}): recipe {name}, {cv.n_folds_of(folds)} folds")

    with tempfile.TemporaryDirectory() as tmp:
        torch.set_num_threads(2)
        start = time.time()
        cv.run_cv(data, folds, {name: comp.recipes()[name]}, y, comp.metric, Path(tmp) / "seq", options=options)
        sequential = time.time() - start

        connect("local", num_cpus=2)
        start = time.time()
        failures = run_folds_on_ray(comp, data_dir, folds, [name], y, Path(tmp) / "ray", options=options,
                                    address="local", cpus_per_task=1)
        on_ray = time.time() - start
    assert not failures, failures
    print(f"sequential, 2 threads: {sequential:.1f} s;  Ray, 2 workers x 1 thread: {on_ray:.1f} s;  "
          f"speed-up {sequential / on_ray:.2f}x")


if __name__ == "__main__":
    main()
