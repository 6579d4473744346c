"""The command line, a thin layer over :func:`kitbox.run`: ``python submit.py COMPETITION [options]``.

COMPETITION is a slug or alias of an installed competition, ``path/to/my_comp.py[:Class]`` or ``module:Class``.
Only the standard library is imported at module level, so ``--help`` answers instantly.
"""
from __future__ import annotations

import argparse
import errno
import logging
import os
import sys
from pathlib import Path

from kitbox.adapt import registry
from kitbox.errors import InputError
from kitbox.io.kaggle import KaggleError, local_data_dir, output_dir

# ---------------------------------------------------------------------------------------------- arguments


def _data_status(entry) -> str:
    try:
        found = local_data_dir(entry.slug)
    except OSError:
        found = None
    if found is not None:
        return f"data in {found}"
    spec_dir = Path(__file__).resolve().parents[1] / "competitions" / "samples" / entry.slug
    return "embedded sample only" if spec_dir.is_dir() else "no data"


def competitions_table() -> str:
    lines = ["installed competitions (slug, alias, metric, data):"]
    for slug, entry in sorted(registry.entries().items()):
        alias = ",".join(entry.aliases)
        origin = "" if entry.origin == "built-in" else f"  (from {entry.origin})"
        lines.append(f"  {slug:36s} {alias:16s} {entry.metric or '?':12s} {_data_status(entry)}{origin}")
    lines.append("  ... or your own adapter: python submit.py path/to/my_comp.py  (start one with --new DATA_DIR)")
    return "\n".join(lines)


class _HelpWithTable(argparse.RawDescriptionHelpFormatter):
    def format_help(self):
        return super().format_help() + "\n" + competitions_table() + "\n"


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python submit.py", formatter_class=_HelpWithTable,
        description="Train a competition's recipes with k-fold CV, blend them on OOF predictions, write a checked "
                    "submission.",
        epilog="examples:\n  python submit.py rossmann --quick\n  python submit.py my_comp.py --data data/my-comp\n"
               "  python submit.py digits --folds 0,1   # only these folds; a later run finishes the rest\n"
               "  python submit.py digits --check my.csv\n  python submit.py --new data/my-comp   # write an adapter",
    )
    p.add_argument("competition", nargs="?", help="slug or alias (list below), path/to/adapter.py[:Class], module:Class")
    p.add_argument("--data", metavar="DIR", help="folder (or Kaggle's .zip) with the competition's files (default: "
                   "./data/SLUG, /kaggle/input/SLUG, a download with Kaggle credentials, else the embedded sample)")
    p.add_argument("--out", metavar="FILE", help="submission path (default: ./submission-SLUG.csv, in "
                   "/kaggle/working inside a Kaggle notebook; a copy stays in the run folder)")
    p.add_argument("--folds", metavar="K|LIST", help="K: number of folds; 0,2 (a comma list, '3,' for one): run only "
                   "these folds now")
    p.add_argument("--n-folds", type=int, metavar="K", help="number of folds (default: the competition's)")
    p.add_argument("--recipes", metavar="A,B", help="run only these recipes (and the ones they need)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="a recipe option, e.g. --set "
                   "epochs=3 (every recipe with that option) or --set cnn.lr=1e-3 (one recipe); see --options")
    p.add_argument("--options", action="store_true", help="list every recipe's options with their defaults, then exit")
    p.add_argument("--weights", metavar="PATH", help="pretrained weights file or folder, passed to the recipes")
    p.add_argument("--download-weights", action="store_true", help="fetch pretrained weights from the hub when "
                   "none are found locally (needs internet)")
    p.add_argument("--from-scratch", action="store_true", help="vision/text models from random weights (no pretrained "
                   "weights needed; much worse scores)")
    p.add_argument("--device", choices=("cpu", "cuda"), help="force the device (default: CUDA when present)")
    p.add_argument("--gpus", type=int, metavar="N", help="data parallel on N GPUs of this machine: relaunches the "
                   "command under torchrun with N processes (NCCL)")
    p.add_argument("--compile", action="store_true", help="torch.compile the models (a message and plain eager "
                   "mode where compiling fails)")
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--quick", action="store_true", help="short training, for a smoke test (its own run folders)")
    p.add_argument("--run-dir", metavar="DIR", help="run folder (default: runs/SLUG, runs/SLUG-sample on the sample)")
    p.add_argument("--fresh", action="store_true", help="train again: move this configuration's finished folds aside")
    p.add_argument("--download", action="store_true", help="download the data from Kaggle into ./data/SLUG")
    p.add_argument("--submit", action="store_true", help="upload the submission to Kaggle and print its score")
    p.add_argument("--message", help="submission message for --submit")
    p.add_argument("--check", metavar="FILE", help="only check FILE against the sample submission; exit 1 if wrong")
    p.add_argument("--runs", action="store_true", help="print the ledger of finished runs of this competition")
    p.add_argument("--new", metavar="DATA_DIR", help="write an adapter for the competition downloaded in DATA_DIR "
                   "(COMPETITION names the file to write; --metric NAME its metric)")
    p.add_argument("--metric", metavar="NAME", help="with --new: the competition's metric (its Evaluation page says)")
    p.add_argument("--ray", metavar="ADDRESS", help="run the folds as Ray tasks: auto, local, or HOST:PORT")
    p.add_argument("--ray-cpus", type=int, default=1, metavar="N", help="CPUs per Ray fold task (default 1)")
    p.add_argument("--ray-gpus", type=float, default=0, metavar="F", help="GPUs per Ray fold task (default 0)")
    p.add_argument("--wheelhouse", metavar="DIR", help="gather kitbox and its dependencies as wheels into DIR for an "
                   "offline Kaggle install, then exit")
    p.add_argument("--wheelhouse-all", action="store_true", help="with --wheelhouse: include packages Kaggle preinstalls")
    p.add_argument("-q", "--quiet", action="store_true", help="only warnings from the adapters' logs")
    p.add_argument("--debug", action="store_true", help="show the full traceback of an error (also KITBOX_DEBUG=1)")
    return p


def parse_sets(pairs: list[str]) -> dict[str, str]:
    """``["epochs=3", "cnn.lr=1e-3"]`` -> ``{"epochs": "3", "cnn.lr": "1e-3"}``; each recipe's declared option types
    convert the values (:func:`kitbox.adapt.options.resolve_options`)."""
    options = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise InputError(f"--set {pair!r}: write KEY=VALUE, e.g. --set epochs=3")
        options[key.strip()] = value.strip()
    return options


# ---------------------------------------------------------------------------------------------- commands


def check_command(args) -> int:
    from kitbox.io.submission import SubmissionError, check_submission, find_sample_submission, metric_kind, rules_for_metric

    comp = registry.get_competition(args.competition)
    data_dir = local_data_dir(comp.slug, args.data) or (Path(comp.sample_dir) if comp.sample_dir else None)
    if data_dir is None or not data_dir.is_dir():
        raise InputError(f"no data folder for {comp.slug} to find sample_submission.csv in: pass --data DIR")
    sample = find_sample_submission(data_dir)
    if comp.sample_dir and data_dir.resolve() == Path(comp.sample_dir).resolve():
        print(f"note: checking against the embedded sample's {sample.name}; pass --data DIR for the real one")
    rules = rules_for_metric(comp.metric_name, sample)
    if metric_kind(comp.metric) == "label":  # labels must be classes seen in train: that needs the data
        from kitbox.io.submission import submission_rules

        rules = submission_rules(comp, comp.load(data_dir))
    try:
        check_submission(args.check, sample, name=args.check, **rules)
    except SubmissionError as e:
        print(f"FAILED: {e}\n(checked against {sample})", file=sys.stderr)
        return 1
    print(f"OK: {args.check} matches {sample}")
    return 0


def options_command(args) -> int:
    from kitbox.adapt.options import describe_options
    from kitbox.pipeline.stages import resolve_recipes

    comp = registry.get_competition(args.competition)
    for name, r in resolve_recipes(comp.recipes(), args.recipes).items():
        needs = f"  (needs {', '.join(r.needs)})" if r.needs else ""
        print(f"{name}{needs}: {describe_options(r)}")
    return 0


def runs_command(args) -> int:
    from kitbox.io.runs import ledger_table, read_ledger

    comp = registry.get_competition(args.competition)
    root = Path(args.run_dir).parent if args.run_dir else output_dir() / "runs"
    print(ledger_table(read_ledger(root / "ledger.jsonl"), comp.slug))
    return 0


def run_command(args) -> int:
    from kitbox.pipeline.stages import run

    report = run(args.competition, args.data, folds=args.folds, n_folds=args.n_folds, recipes=args.recipes,
                 options=parse_sets(args.set),
                 seed=args.seed, quick=args.quick, weights=args.weights, download_weights=args.download_weights,
                 from_scratch=args.from_scratch, device=args.device, compile=args.compile, run_dir=args.run_dir,
                 out=args.out,
                 download=args.download, fresh=args.fresh, submit_to_kaggle=args.submit, message=args.message,
                 ray=args.ray, ray_cpus=args.ray_cpus, ray_gpus=args.ray_gpus)
    if not report.recipes:  # a torchrun rank other than 0: it trained, rank 0 reports
        return 0
    print(report.summary())
    if not report.complete:
        missing = {n: r["missing"] for n, r in report.recipes.items() if r["missing"]}
        print(f"Not every fold has run ({missing}), so no submission was written. Finished folds are saved in "
              f"{report.run_dir}; rerun without --folds (same other options) to train the missing folds and submit.")
    return 0


# ---------------------------------------------------------------------------------------------- errors


KNOWN_BEFORE_TRAINING = (InputError, KaggleError, FileNotFoundError, ImportError, ValueError, KeyError)


def _known(err: BaseException) -> bool:
    """Input mistakes get one line; a bug inside a recipe keeps its traceback."""
    from kitbox.adapt.options import OptionError

    if isinstance(err, OSError) and err.errno == errno.ENOSPC:
        return True
    during_training = hasattr(err, "kitbox_fold")
    always = (InputError, OptionError, KaggleError, FileNotFoundError, ImportError)
    if isinstance(err, always) or type(err).__name__ in ("TrainingDiverged", "SubmissionError", "WeightsNotFound"):
        return True
    return not during_training and isinstance(err, KNOWN_BEFORE_TRAINING)


def _message(err: BaseException) -> str:
    if isinstance(err, OSError) and err.errno == errno.ENOSPC:
        return f"the disk is full ({err.filename or 'while writing'}): free some space and rerun; finished folds are kept"
    text = err.args[0] if isinstance(err, KeyError) and err.args else str(err)
    return " ".join(str(text).split())


def _stopped_note(err: BaseException) -> str | None:
    where = getattr(err, "kitbox_fold", None)
    if where is None:
        return None
    name, fold, config_dir = where
    return (f"Stopped during [{name}] {fold}. Finished folds are kept in {config_dir.parent.parent}; rerun the same "
            "command to train only the rest.")


def _setup_logging(quiet: bool) -> None:
    logging.basicConfig(level=logging.WARNING if quiet else logging.INFO, format="%(message)s", stream=sys.stdout,
                        force=True)
    for noisy in ("matplotlib", "PIL", "urllib3", "filelock", "httpx", "huggingface_hub", "fsspec"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def main(argv=None) -> int:
    """Entry point of ``python submit.py`` and the ``kitbox`` command."""
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(argv)
    debug = args.debug or os.environ.get("KITBOX_DEBUG", "") not in ("", "0")
    _setup_logging(args.quiet)
    try:
        return _dispatch(args, argv)
    except KeyboardInterrupt as e:
        print(f"\n{_stopped_note(e) or 'Stopped.'}", file=sys.stderr)
        return 130
    except Exception as e:
        if debug or not _known(e):
            note = _stopped_note(e)
            if note:
                print(note, file=sys.stderr)
            raise
        print(f"error: {_message(e)}", file=sys.stderr)
        note = _stopped_note(e)
        if note:
            print(note, file=sys.stderr)
        return 1


def torchrun_argv(argv: list[str], n_gpus: int) -> list[str]:
    """The same command under torchrun with ``n_gpus`` processes (``--gpus N`` dropped)."""
    rest, skip = [], False
    for a in argv:
        if skip:
            skip = False
            continue
        if a == "--gpus":
            skip = True
            continue
        if not a.startswith("--gpus="):
            rest.append(a)
    script = str(Path(__file__).resolve().parents[1] / "submit.py")
    return [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(n_gpus), script, *rest]


def gpus_command(args, argv: list[str]) -> int:
    import subprocess

    import torch

    found = torch.cuda.device_count()
    if args.gpus > found:
        raise InputError(f"--gpus {args.gpus}: torch sees {found} GPU(s) on this machine; on Kaggle pick the "
                         "'GPU T4 x2' accelerator, or leave --gpus out to train on one device")
    return subprocess.call(torchrun_argv(argv, args.gpus))


def _dispatch(args, argv: list[str]) -> int:
    if args.gpus and args.gpus > 1 and "RANK" not in os.environ:
        return gpus_command(args, argv)
    if args.wheelhouse:
        from kitbox.io.kaggle import wheelhouse

        wheelhouse(args.wheelhouse, all_deps=args.wheelhouse_all)
        return 0
    if args.new:
        from kitbox.adapt.scaffold import new_command

        return new_command(args.new, args.competition, args.metric)
    if not args.competition:
        build_parser().print_help()
        return 2
    if args.check:
        return check_command(args)
    if args.options:
        return options_command(args)
    if args.runs:
        return runs_command(args)
    return run_command(args)


if __name__ == "__main__":
    sys.exit(main())
