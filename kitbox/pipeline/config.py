"""One run's configuration, declared once: every setting ``kitbox.prepare`` / ``kitbox.run`` take as keywords is a
field of :class:`RunConfig`, and ``submit.py``'s flags for them are generated from its fields (flag, help text,
type), so the Python call and the command line cannot drift apart.

    kitbox.run("digits", folds=[0], quick=True)            # keywords: RunConfig's fields
    kitbox.run("digits", config=RunConfig(quick=True))     # or a RunConfig, reused and changed with replace()
    python submit.py digits --folds 0, --quick             # the same fields as flags
"""
from __future__ import annotations

import argparse
from dataclasses import dataclass, field, fields, replace
from typing import Any

from kitbox.errors import InputError


def _flag(default, flag: str, help: str, metavar: str | None = None, **argparse_options) -> Any:
    """A field whose command-line flag is ``flag``."""
    meta = {"flag": flag, "help": help, "metavar": metavar, "argparse": argparse_options}
    if isinstance(default, (dict, list)):
        return field(default_factory=type(default), metadata=meta)
    return field(default=default, metadata=meta)


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


@dataclass(frozen=True)
class RunConfig:
    """Everything that configures a run (what ``python submit.py SLUG ...`` says with flags)."""

    data: str | None = _flag(None, "--data", "folder (or Kaggle's .zip) with the competition's files (default: "
                             "./data/SLUG, /kaggle/input/SLUG, a download with Kaggle credentials, else the embedded "
                             "sample)", "DIR")
    out: str | None = _flag(None, "--out", "submission path (default: ./submission-SLUG.csv, in /kaggle/working "
                            "inside a Kaggle notebook; a copy stays in the run folder)", "FILE")
    folds: Any = _flag(None, "--folds", "K: number of folds; 0,2 (a comma list, '3,' for one): run only these folds "
                       "now (in Python: a number or a list of fold ids)", "K|LIST")
    n_folds: int | None = _flag(None, "--n-folds", "number of folds (default: the competition's)", "K", type=int)
    recipes: Any = _flag(None, "--recipes", "run only these recipes (and the ones they need)", "A,B")
    options: dict = _flag({}, "--set", "a recipe option, e.g. --set epochs=3 (every recipe with that option) or --set "
                          "cnn.lr=1e-3 (one recipe); see --options", "KEY=VALUE", action="append")
    weights: str | None = _flag(None, "--weights", "pretrained weights file or folder, passed to the recipes", "PATH")
    download_weights: bool = _flag(False, "--download-weights", "fetch pretrained weights from the hub when none are "
                                   "found locally (needs internet)")
    from_scratch: bool = _flag(False, "--from-scratch", "vision/text models from random weights (no pretrained "
                               "weights needed; much worse scores)")
    device: str | None = _flag(None, "--device", "force the device (default: CUDA when present)",
                               choices=("cpu", "cuda"))
    compile: bool = _flag(False, "--compile", "torch.compile the models (a message and plain eager mode where "
                          "compiling fails)")
    time_limit: float | None = _flag(None, "--time-limit", "minutes the run may take: it trains every recipe's first "
                                     "fold, completes the recipes that fit (best first fold first), drops the rest "
                                     "and says so", "MINUTES", type=float)
    pseudo_label: float | None = _flag(None, "--pseudo-label", "after the blend, a second round in which each "
                                       "fold also trains on the test rows its own models predicted with at least "
                                       "this probability (e.g. 0.95); the round with the better honest CV makes the "
                                       "submission", "CONFIDENCE", type=float)
    predict_only: bool = _flag(False, "--predict-only", "train nothing: the saved models of a finished run (--models) "
                               "predict this data's test files and write the checked submission (Kaggle code "
                               "competitions: the hidden test set, internet off)")
    models: str | None = _flag(None, "--models", "with --predict-only: the run folder whose saved models predict "
                               "(default: --run-dir, else runs/SLUG), or one of its blends/HASH folders", "RUN_DIR")
    seed: int = _flag(42, "--seed", "the seed of the folds and of every recipe (default 42)", "N", type=int)
    quick: bool = _flag(False, "--quick", "short training, for a smoke test (its own run folders)")
    run_dir: str | None = _flag(None, "--run-dir", "run folder (default: runs/SLUG, runs/SLUG-sample on the "
                                "sample)", "DIR")
    fresh: bool = _flag(False, "--fresh", "train again: move this configuration's finished folds aside")
    download: bool = _flag(False, "--download", "download the data from Kaggle into ./data/SLUG")
    submit: bool = _flag(False, "--submit", "upload the submission to Kaggle and print its score")
    message: str | None = _flag(None, "--message", "submission message for --submit", "TEXT")
    ray: str | None = _flag(None, "--ray", "run the folds as Ray tasks: auto, local, or HOST:PORT", "ADDRESS")
    ray_cpus: int = _flag(1, "--ray-cpus", "CPUs per Ray fold task (default 1)", "N", type=int)
    ray_gpus: float = _flag(0.0, "--ray-gpus", "GPUs per Ray fold task (default 0)", "F", type=float)
    progress: bool = True  # progress bars (Python only: the command line always shows them)

    @classmethod
    def of(cls, config: "RunConfig | None" = None, **changes) -> "RunConfig":
        """``config`` (default: every default) with ``changes``; an unknown name is a TypeError naming the valid
        ones. ``data=None`` keeps the config's data."""
        names = {f.name for f in fields(cls)}
        unknown = sorted(set(changes) - names)
        if unknown:
            raise TypeError(f"unknown run setting(s) {unknown}; the settings are {sorted(names)}")
        if changes.get("data") is None:
            changes.pop("data", None)
        if changes.get("options") is None:
            changes.pop("options", None)
        return replace(config or cls(), **changes)

    def recipe_settings(self, device: str, n_folds: int):
        """The :class:`kitbox.adapt.contract.RunSettings` every recipe may consult (and the fingerprint records):
        this config with the run's device type and number of folds settled."""
        from kitbox.adapt.contract import RunSettings  # not at the top: --help must not import numpy and pandas

        return RunSettings(quick=self.quick, weights=None if self.weights is None else str(self.weights),
                           download_weights=self.download_weights, from_scratch=self.from_scratch, device=device,
                           compile=self.compile, n_folds=n_folds, progress=self.progress)


def add_flags(parser: argparse.ArgumentParser | argparse._ArgumentGroup) -> None:
    """One flag per field of :class:`RunConfig` that has one, with its help text and type."""
    for f in fields(RunConfig):
        if "flag" not in f.metadata:
            continue
        meta = f.metadata
        options = {"dest": f.name, "help": meta["help"], **meta["argparse"]}
        if f.default is False:
            options["action"] = "store_true"
        else:
            options["metavar"] = meta["metavar"]
            options["default"] = [] if options.get("action") == "append" else f.default
            if "choices" in options:
                options.pop("metavar")
        parser.add_argument(meta["flag"], **options)


def from_args(args: argparse.Namespace) -> RunConfig:
    """The RunConfig a parsed command line says (``--set`` pairs become the options dict)."""
    values = {f.name: getattr(args, f.name) for f in fields(RunConfig) if "flag" in f.metadata}
    values["options"] = parse_sets(values["options"] or [])
    return RunConfig(**values)
