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
from kitbox.pipeline.config import add_flags, from_args

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
    add_flags(p.add_argument_group("run settings (kitbox.run's keywords, same names)"))
    other = p.add_argument_group("other commands and options")
    other.add_argument("--options", action="store_true", dest="list_options", help="list every recipe's options with their defaults, "
                       "then exit")
    other.add_argument("--gpus", type=int, metavar="N", help="data parallel on N GPUs of this machine: relaunches "
                       "the command under torchrun with N processes (NCCL)")
    other.add_argument("--check", metavar="FILE", help="only check FILE against the sample submission; exit 1 if "
                       "wrong")
    other.add_argument("--runs", action="store_true", help="print the ledger of finished runs of this competition")
    other.add_argument("--new", metavar="DATA_DIR", help="write an adapter for the competition downloaded in "
                       "DATA_DIR (COMPETITION names the file to write; --metric NAME its metric)")
    other.add_argument("--metric", metavar="NAME", help="with --new: the competition's metric (its Evaluation page "
                       "says)")
    other.add_argument("--wheelhouse", metavar="DIR", help="gather kitbox and its dependencies as wheels into DIR "
                       "for an offline Kaggle install, then exit")
    other.add_argument("--wheelhouse-all", action="store_true", help="with --wheelhouse: include packages Kaggle "
                       "preinstalls")
    other.add_argument("-q", "--quiet", action="store_true", help="only warnings from the adapters' logs")
    other.add_argument("--debug", action="store_true", help="show the full traceback of an error (also KITBOX_DEBUG=1)")
    return p


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
    if metric_kind(comp.metric) in ("label", "mask"):  # classes seen in train, each test image's size: the data
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

    report = run(args.competition, config=from_args(args))
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
    if args.list_options:
        return options_command(args)
    if args.runs:
        return runs_command(args)
    return run_command(args)


if __name__ == "__main__":
    sys.exit(main())
