"""The command line: ``python submit.py SLUG`` finds the data, runs every recipe on every fold, blends
them on out-of-fold predictions, writes a checked submission and prints a summary.

Only the standard library is imported at module level, so ``--help`` answers instantly; numpy, pandas,
torch and the adapters load when a run needs them.
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from datetime import datetime
from pathlib import Path

import competitions
from kitbox.kaggle import KaggleError, in_kaggle_notebook, local_data_dir, output_dir


class CLIError(Exception):
    """A problem with the command's inputs; printed as one line, without a traceback."""


# ---------------------------------------------------------------------------------------------- arguments


def _data_status(slug: str) -> str:
    try:
        found = local_data_dir(slug)
    except OSError:
        found = None
    if found is not None:
        return f"data in {found}"
    if (competitions.SAMPLES / slug).is_dir():
        return "embedded sample only"
    return "no data"


def competitions_table() -> str:
    lines = ["competitions (slug, alias, metric, data):"]
    aliases = {slug: alias for alias, slug in competitions.ALIASES.items()}
    for slug in competitions.COMPETITIONS:
        if competitions.is_available(slug):
            metric = competitions.metric_name(slug) or "?"
            status = _data_status(slug)
        else:
            metric, status = "-", f"unavailable: {competitions.module_file(slug).name} not written yet"
        lines.append(f"  {slug:36s} {aliases.get(slug, ''):16s} {metric:10s} {status}")
    return "\n".join(lines)


class _HelpWithTable(argparse.RawDescriptionHelpFormatter):
    def format_help(self):
        return super().format_help() + "\n" + competitions_table() + "\n"


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python submit.py",
        formatter_class=_HelpWithTable,
        description="Train a competition's recipes with k-fold CV, blend them on OOF predictions, "
                    "write a checked submission.",
        epilog="examples:\n  python submit.py rossmann --quick\n  python submit.py digits --folds 0,1   "
               "# only these folds; a later run finishes the rest\n  python submit.py digits --check my.csv",
    )
    p.add_argument("competition", nargs="?", help="Kaggle slug or alias (list below)")
    p.add_argument("--data", metavar="DIR", help="folder with the competition's files (default: ./data/SLUG, "
                   "/kaggle/input/SLUG, a download with Kaggle credentials, else the embedded sample)")
    p.add_argument("--out", metavar="FILE", help="submission path (default: ./submission.csv, "
                   "/kaggle/working/submission.csv in a Kaggle notebook; always also RUN_DIR/submission.csv)")
    p.add_argument("--folds", metavar="K|LIST", help="K: number of folds; 0,2 (a comma list, '3,' for one): "
                   "run only these folds now")
    p.add_argument("--n-folds", type=int, metavar="K", help="number of folds (default: the competition's)")
    p.add_argument("--recipes", metavar="A,B", help="run only these recipes")
    p.add_argument("--weights", metavar="PATH", help="pretrained weights file, passed to the recipes")
    p.add_argument("--from-scratch", action="store_true", help="train vision/text models from random weights "
                   "(no --weights needed; much worse scores)")
    p.add_argument("--download", action="store_true", help="download the data from Kaggle into ./data/SLUG")
    p.add_argument("--submit", action="store_true", help="upload the submission to Kaggle and print its score")
    p.add_argument("--message", help="submission message for --submit")
    p.add_argument("--check", metavar="FILE", help="only check FILE against the sample submission; exit 1 if wrong")
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--run-dir", metavar="DIR", help="run folder (default: runs/SLUG, runs/SLUG-sample on the sample)")
    p.add_argument("--fresh", action="store_true", help="start over: move the old run folder aside")
    p.add_argument("--quick", action="store_true", help="short training, for a smoke test")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="a recipe option, e.g. --set epochs=3 --set lr=0.003 (see each recipe's docstring)")
    p.add_argument("--ray", metavar="ADDRESS", help="run the folds as Ray tasks: auto (this machine's cluster, else a "
                   "local one), local, or HOST:PORT; needs pip install \"kitbox[ray]\"")
    p.add_argument("--ray-cpus", type=int, default=1, metavar="N", help="CPUs per Ray fold task (default 1)")
    p.add_argument("--ray-gpus", type=float, default=0, metavar="F", help="GPUs per Ray fold task (default 0)")
    p.add_argument("--wheelhouse", metavar="DIR", help="gather kitbox and its dependencies as wheels into DIR "
                   "for an offline Kaggle install, then exit")
    p.add_argument("--wheelhouse-all", action="store_true", help="with --wheelhouse: include packages Kaggle preinstalls")
    return p


def parse_folds(text: str | None) -> tuple[int | None, list[int] | None]:
    """``"5"`` -> (5, None): five folds; ``"0,2"`` or ``"3,"`` -> (None, [0, 2]) / (None, [3]): only these folds."""
    if not text:
        return None, None
    try:
        if "," not in text:
            return int(text), None
        return None, sorted({int(t) for t in text.split(",") if t.strip()})
    except ValueError:
        raise CLIError(f"--folds {text!r}: give a number of folds (5) or a comma list of fold ids (0,2)") from None


# ---------------------------------------------------------------------------------------------- commands


def parse_options(pairs: list[str]) -> dict:
    """``["epochs=3", "lr=3e-3", "arch=resnet34", "refit=false"]`` -> ``{"epochs": 3, "lr": 0.003, "arch": "resnet34",
    "refit": False}``: numbers become numbers, true / false (any case) booleans, the rest stays text."""
    options = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise CLIError(f"--set {pair!r}: write KEY=VALUE, e.g. --set epochs=3")
        if value.strip().lower() in ("true", "false"):  # "false" as text would be truthy
            options[key.strip()] = value.strip().lower() == "true"
            continue
        for cast in (int, float):
            try:
                value = cast(value)
                break
            except ValueError:
                pass
        options[key.strip()] = value
    return options


def _competition(name: str, competition=None):
    if competition is not None:
        return competition
    try:
        return competitions.get_competition(name)
    except KeyError as e:
        raise CLIError(e.args[0]) from None


def check_command(args, competition=None) -> int:
    from kitbox.submission import SubmissionError, check_submission, find_sample_submission, rules_for_metric

    if competition is not None:
        slug, metric, sample_dir = competition.slug, competition.metric_name, competition.sample_dir
    else:  # the check needs no adapter import: the sample file and the metric's name are enough
        try:
            slug = competitions.resolve(args.competition)
        except KeyError as e:
            raise CLIError(e.args[0]) from None
        metric, sample_dir = competitions.metric_name(slug), competitions.SAMPLES / slug
    sample_dir = Path(sample_dir) if sample_dir else None
    data_dir = local_data_dir(slug, args.data) or sample_dir
    if data_dir is None or not data_dir.is_dir():
        raise CLIError(f"no data folder for {slug} to find sample_submission.csv in: pass --data DIR")
    try:
        sample = find_sample_submission(data_dir)
    except SubmissionError as e:
        raise CLIError(str(e)) from None
    if data_dir == sample_dir:
        print(f"note: checking against the embedded sample's {sample.name}; pass --data DIR for the real one")
    try:
        check_submission(args.check, sample, name=args.check, **rules_for_metric(metric or "", sample))
    except SubmissionError as e:
        print(f"FAILED: {e}\n(checked against {sample})", file=sys.stderr)
        return 1
    print(f"OK: {args.check} matches {sample}")
    return 0


def _join_torchrun() -> int:
    """Under ``torchrun`` join the process group and return this process's rank; 0 in a plain run (no torch import)."""
    if "RANK" not in os.environ or "WORLD_SIZE" not in os.environ:
        return 0
    from kitbox import distributed

    distributed.init_from_env()
    return distributed.rank()


def _barrier() -> None:
    """Wait for every torchrun rank (a no-op in a plain run): rank 0 sets up the run folder, the others then read it."""
    if "RANK" in os.environ and "WORLD_SIZE" in os.environ:
        import torch.distributed as dist

        if dist.is_initialized():
            dist.barrier()


def _quiet(*args, **kwargs) -> None:
    pass


def _run_dir(args, slug: str, is_sample: bool) -> Path:
    if args.run_dir:
        return Path(args.run_dir)
    return output_dir() / "runs" / (slug + ("-sample" if is_sample else ""))


def _move_aside(run_dir: Path) -> None:
    if run_dir.exists():
        old = run_dir.with_name(f"{run_dir.name}.old-{datetime.now():%Y%m%d-%H%M%S}")
        run_dir.rename(old)
        print(f"--fresh: moved the previous run to {old}")


def _select_recipes(all_recipes: dict, wanted: str | None) -> dict:
    if not wanted:
        return all_recipes
    names = [n.strip() for n in wanted.split(",") if n.strip()]
    unknown = [n for n in names if n not in all_recipes]
    if unknown:
        raise CLIError(f"--recipes: unknown {unknown}; this competition has {list(all_recipes)}")
    return {n: all_recipes[n] for n in names}


def _elapsed(seconds: float) -> str:
    minutes, sec = divmod(int(round(seconds)), 60)
    return f"{minutes}m {sec:02d}s" if minutes else f"{seconds:.1f}s"


def summary_text(slug: str, metric, report: dict, blend=None, submission: list | None = None,
                 seconds: float = 0.0, is_sample: bool = False) -> str:
    arrow = "higher" if metric.greater_is_better else "lower"
    demo = "  [embedded sample: a demo, not the competition's data]" if is_sample else ""
    lines = [f"== {slug}: {metric.name} ({arrow} is better){demo}"]
    for name, r in report.items():
        if "mean" not in r:
            lines.append(f"  {name:20s} no finished folds")
            continue
        folds = " ".join(f"{s:.5f}" for s in r["folds"].values())
        todo = f"  (folds {r['missing']} not run yet)" if r["missing"] else ""
        lines.append(f"  {name:20s} OOF {r['oof']:.5f}   folds {r['mean']:.5f} +- {r['std']:.5f} [{folds}]{todo}")
    if blend is not None:
        weights = ", ".join(f"{n} {w:.2f}" for n, w in blend["weights"].items() if w > 0)
        by = blend.get("metric", metric.name)
        named = ""
        if by != metric.name:  # blended by another objective: every recipe's score in it, and the blend's named
            singles = ", ".join(f"{n} {s:.5f}" for n, s in blend["single_scores"].items())
            lines.append(f"  blended by {by} on OOF: {singles}")
            named = f" ({by})"
        lines.append(f"  {'blend':20s} OOF {blend['score']:.5f}{named}   weights: {weights}")
        lines.append(f"CV score: {blend['score']:.5f}{named}")
    for path in submission or []:
        lines.append(f"submission: {path}")
    lines.append(f"elapsed: {_elapsed(seconds)}")
    return "\n".join(lines)


def run_command(args, competition=None) -> int:
    import numpy as np

    from kitbox import cv, ensemble
    from kitbox.kaggle import find_data, submit
    from kitbox.runs import save_config, save_npy, write_json
    from kitbox.submission import SubmissionError, rules_for_metric, write_submission

    start = time.time()
    comp = _competition(args.competition, competition)
    metric = comp.metric
    rank = _join_torchrun()
    main_rank = rank == 0  # under torchrun every rank trains, only rank 0 writes files and prints
    log = print if main_rank else _quiet
    if args.ray and rank:
        raise CLIError("--ray runs whole folds as tasks; do not combine it with torchrun")
    data_dir, is_sample = find_data(comp.slug, args.data, comp.sample_dir, download=args.download and main_rank,
                                    log=log)
    if args.submit and is_sample:
        raise CLIError("--submit with the embedded sample: its test rows are not the competition's; get the data first")
    run_dir = _run_dir(args, comp.slug, is_sample)
    if main_rank:
        if args.fresh:
            _move_aside(run_dir)
        run_dir.mkdir(parents=True, exist_ok=True)
    log(f"{comp.slug}: data {data_dir}{' (embedded sample)' if is_sample else ''}; run folder {run_dir}")

    data = comp.load(data_dir)
    data.is_sample = data.is_sample or is_sample
    y = np.asarray(comp.targets(data))
    n_folds_arg, only_folds = parse_folds(args.folds)
    asked = args.n_folds or n_folds_arg
    for turn in (True, False):  # rank 0 makes or reads folds.csv first; the other ranks then read the same file
        if main_rank == turn:
            try:
                folds, reused = cv.load_or_make_folds(run_dir, len(data.train),
                                                      lambda: comp.split(data, asked or comp.default_folds, args.seed))
            except ValueError as e:
                raise CLIError(str(e)) from None
        _barrier()
    n_folds = cv.n_folds_of(folds)
    if reused and asked and asked != n_folds:
        raise CLIError(f"{run_dir}/folds.csv has {n_folds} folds, you asked for {asked}: use --fresh to re-split")
    recipes = _select_recipes(comp.recipes(), args.recipes)
    if main_rank:
        save_config(run_dir, {
            "competition": comp.slug, "data_dir": str(data_dir), "is_sample": data.is_sample, "metric": metric.name,
            "n_folds": n_folds, "folds_reused": reused, "only_folds": only_folds, "recipes": list(recipes),
            "seed": args.seed, "weights": args.weights, "quick": args.quick, "options": parse_options(args.set),
            "argv": sys.argv, "ray": args.ray, "torchrun_world_size": int(os.environ.get("WORLD_SIZE", 1)),
            "started": datetime.now().isoformat(timespec="seconds"), "kaggle_notebook": in_kaggle_notebook(),
        })
    options = {"weights": args.weights, "from_scratch": args.from_scratch, "quick": args.quick, "seed": args.seed,
               "n_folds": n_folds, **parse_options(args.set)}
    if args.ray:
        only_folds = _run_on_ray(comp, data_dir, folds, recipes, y, run_dir, only_folds, options, args)
    try:
        results = cv.run_cv(data, folds, recipes, y, metric, run_dir, only_folds, args.seed, options, log, main_rank)
    except BaseException:  # a crash or Ctrl-C: say what survived before the traceback
        if main_rank:
            print(f"\nStopped. Finished folds are kept in {run_dir}; rerun the same command to train only the rest.",
                  file=sys.stderr)
        raise
    if not main_rank:
        return 0  # rank 0 blends and writes the submission
    report = cv.cv_report(results, y, metric)
    metrics = {"competition": comp.slug, "metric": metric.name, "greater_is_better": metric.greater_is_better,
               "n_folds": n_folds, "is_sample": data.is_sample, "recipes": report}

    unfinished = {name: res.missing for name, res in results.items() if not res.complete}
    if unfinished:
        write_json(run_dir / "metrics.json", metrics)
        print(summary_text(comp.slug, metric, report, seconds=time.time() - start, is_sample=data.is_sample))
        hint = (f" --run-dir {args.run_dir}" if args.run_dir else "") + (f" --ray {args.ray}" if args.ray else "")
        print(f"Not every fold has run ({unfinished}), so no submission was written. Finished folds are saved in "
              f"{run_dir}; run `python submit.py {args.competition}{hint}` to train the missing folds and submit.")
        return 0

    by_rank = metric.name in ensemble.RANK_METRICS
    oofs = {name: res.oof() for name, res in results.items()}
    rows = np.logical_and.reduce([mask for _, mask in oofs.values()])
    oof_rows = {n: oof[rows] for n, (oof, _) in oofs.items()}  # the rows every recipe predicted
    blend_metric = comp.blend_metric
    found = ensemble.caruana(oof_rows, y[rows], blend_metric, rank=by_rank)
    tests = {name: cv.recipe_test_pred(res, metric) for name, res in results.items()}
    test_pred = ensemble.blend(tests, found.weights, rank=by_rank)
    save_npy(run_dir / "test_blend.npy", test_pred)
    blend_report = {"metric": blend_metric.name, "weights": found.weights, "score": found.score,
                    "single_scores": found.single_scores, "best_single": found.best_single, "rows": int(rows.sum())}
    if blend_metric.name != metric.name:  # the plot shows the recipes in the metric, so the blend too
        blended = ensemble.blend(oof_rows, found.weights, rank=by_rank)
        blend_report[f"score_{metric.name}"] = float(metric(y[rows], blended))
    metrics["blend"] = blend_report
    cv.plot_cv(report, metric, run_dir / "cv_scores.png", blend_report.get(f"score_{metric.name}", found.score))

    table = comp.submission(data, test_pred)
    sample = data.sample_submission
    rules = rules_for_metric(metric.name, sample)
    out = Path(args.out) if args.out else output_dir() / "submission.csv"
    try:
        written = [write_submission(table, run_dir / "submission.csv", sample, **rules)]
        if out.resolve() != written[0].resolve():
            written.append(write_submission(table, out, sample, **rules))
    except SubmissionError as e:
        raise CLIError(f"{type(comp).__name__}.submission() built a table that fails the check: {e}") from None
    metrics["submission"] = [str(p) for p in written]
    write_json(run_dir / "metrics.json", metrics)
    print(summary_text(comp.slug, metric, report, blend_report, written, time.time() - start, data.is_sample))

    if args.submit:
        message = args.message or f"kitbox {'+'.join(recipes)} CV {metric.name} {found.score:.5f}"
        metrics["public_score"] = submit(comp.slug, out, message)
        write_json(run_dir / "metrics.json", metrics)
    return 0


def _run_on_ray(comp, data_dir, folds, recipes, y, run_dir, only_folds, options, args) -> list[int]:
    """Train the unfinished folds as Ray tasks; returns ``[]`` so the local runner only loads what landed."""
    from kitbox.ray_runner import RayUnavailable, run_folds_on_ray

    try:
        run_folds_on_ray(comp, Path(data_dir).resolve(), folds, list(recipes), y, Path(run_dir).resolve(), only_folds,
                         args.seed, options, address=args.ray, cpus_per_task=args.ray_cpus, gpus_per_task=args.ray_gpus)
    except RayUnavailable as e:
        raise CLIError(str(e)) from None
    return []  # folds that failed on Ray stay missing: the summary lists them and says how to finish


def main(argv=None, competition=None) -> int:
    """Entry point of ``python submit.py``; ``competition`` (an adapter instance) bypasses the registry (tests)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        if args.wheelhouse:
            from kitbox.kaggle import wheelhouse

            wheelhouse(args.wheelhouse, all_deps=args.wheelhouse_all)
            return 0
        if not args.competition:
            parser.print_help()
            return 2
        if args.check:
            return check_command(args, competition)
        return run_command(args, competition)
    except (CLIError, KaggleError, FileNotFoundError, ModuleNotFoundError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
