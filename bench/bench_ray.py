"""Benchmark (run by hand): a 4-fold run, sequential with 2 torch threads vs 2 Ray workers with 1 thread each.

    python bench/bench_ray.py digits          # embedded sample unless --data is given
    python bench/bench_ray.py rossmann --data ../shared/data/rossmann-store-sales

Both runs use the same folds and seeds, in fresh run folders; it prints both wall times and their ratio.
"""
from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import torch

from kitbox.pipeline import stages as pipeline
from kitbox.pipeline.ray import connect, run_plan_on_ray


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("competition")
    parser.add_argument("--data")
    parser.add_argument("--folds", type=int, default=4)
    parser.add_argument("--recipe", help="one recipe (default: the competition's first)")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        def plan(folder: str):
            return pipeline.prepare(args.competition, args.data, folds=args.folds, recipes=args.recipe,
                                    run_dir=Path(tmp) / folder, progress=False)

        torch.set_num_threads(2)
        sequential_plan = plan("seq")
        name = next(iter(sequential_plan.recipes))
        print(f"{sequential_plan.competition.slug} ({sequential_plan.data_dir}): recipe {name}, {args.folds} folds")
        start = time.time()
        pipeline.train(sequential_plan)
        sequential = time.time() - start

        connect("local", num_cpus=2)
        start = time.time()
        failures = run_plan_on_ray(plan("ray"), address="local", cpus_per_task=1)
        on_ray = time.time() - start
    assert not failures, failures
    print(f"sequential, 2 threads: {sequential:.1f} s;  Ray, 2 workers x 1 thread: {on_ray:.1f} s;  "
          f"speed-up {sequential / on_ray:.2f}x")


if __name__ == "__main__":
    main()
