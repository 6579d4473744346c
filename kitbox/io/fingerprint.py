"""Fingerprints of what shaped a fold: recipe and options, seed, weights, folds, data files, code version.

A finished fold is reused only when its fingerprint matches the command's: each configuration of a recipe
trains in its own folder, ``RUN/<recipe>/<hash>/``, whose ``config.json`` lists exactly what went into it.
"""
from __future__ import annotations

import dataclasses
import functools
import hashlib
import inspect
import json
import os
import subprocess
from pathlib import Path
from typing import Any

import numpy as np

MAX_DATA_FILES = 200_000  # past this many files the data fingerprint samples names only (a huge image folder)


def digest(obj: Any, length: int = 10) -> str:
    """A short stable hash of a JSON-able object."""
    text = json.dumps(obj, sort_keys=True, default=str)
    return hashlib.sha1(text.encode("utf-8")).hexdigest()[:length]


def file_identity(path) -> dict | None:
    """Name, size and modification time of a file (or of every file under a folder): cheap, and changes when
    the file does."""
    if path is None:
        return None
    path = Path(path).expanduser()
    if path.is_file():
        st = path.stat()
        return {"path": str(path.resolve()), "bytes": st.st_size, "mtime_ns": st.st_mtime_ns}
    if path.is_dir():
        return {"path": str(path.resolve()), **data_fingerprint(path)}
    return {"path": str(path), "missing": True}


def data_fingerprint(data_dir, exclude=()) -> dict:
    """Every file under the data folder by relative name, size and modification time, as one hash; ``exclude``:
    files or folders (relative names) left out, the test files (:func:`test_identity` covers them)."""
    root = Path(data_dir)
    left_out = {Path(p).as_posix().strip("/") for p in exclude}
    h, n_files, n_bytes = hashlib.sha1(), 0, 0
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        for name in sorted(filenames):
            if name.startswith("."):
                continue
            parts = Path(os.path.relpath(os.path.join(dirpath, name), root)).parts
            if any("/".join(parts[:k]) in left_out for k in range(1, len(parts) + 1)):
                continue
            n_files += 1
            if n_files > MAX_DATA_FILES:
                continue
            st = os.stat(os.path.join(dirpath, name))
            n_bytes += st.st_size
            rel = os.path.relpath(os.path.join(dirpath, name), root)
            h.update(f"{rel}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
    return {"files": n_files, "bytes": n_bytes, "sha1": h.hexdigest()[:16]}


def test_identity(data_dir, paths) -> str:
    """One hash of the test files (``paths``, relative to the data folder: files or folders) by name, size and
    modification time: a fold records it, and a finished fold made for other test files predicts them again."""
    root = Path(data_dir)
    return digest({p: file_identity(root / p) for p in sorted(paths)}, 12)


@functools.lru_cache(maxsize=1)
def code_version() -> dict:
    """kitbox's version, and the git revision of its checkout when it is one (with a mark for uncommitted edits)."""
    from kitbox import __version__

    root = Path(__file__).resolve().parents[2]
    out = {"kitbox": __version__, "git": None}
    if (root / ".git").exists():
        try:
            rev = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True,
                                 timeout=10).stdout.strip()
            dirty = subprocess.run(["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no", "kitbox"],
                                   capture_output=True, text=True, timeout=10).stdout.strip()
            out["git"] = (rev + ("+edits" if dirty else "")) or None
        except (OSError, subprocess.SubprocessError):
            pass
    return out


def source_sha1(obj) -> str | None:
    """The hash of the source file that defines ``obj`` (an adapter class or a recipe function)."""
    try:
        path = inspect.getsourcefile(obj)
    except TypeError:
        return None
    if not path or not Path(path).is_file():
        return None
    return hashlib.sha1(Path(path).read_bytes()).hexdigest()[:12]


def function_sha1(fn) -> str | None:
    """The hash of a recipe function's own source (an edit elsewhere in its module does not retrain it; the code
    version covers kitbox's other changes)."""
    try:
        return hashlib.sha1(inspect.getsource(fn).encode("utf-8")).hexdigest()[:12]
    except (OSError, TypeError):
        return source_sha1(fn)


def folds_digest(folds: np.ndarray) -> str:
    return hashlib.sha1(np.ascontiguousarray(folds, dtype=np.int64).tobytes()).hexdigest()[:12]


def options_dict(options) -> dict:
    if options is None:
        return {}
    return dataclasses.asdict(options) if dataclasses.is_dataclass(options) else dict(options)


def recipe_config(name: str, recipe, options, *, seed: int, settings, folds: np.ndarray, data: dict, adapter,
                  needs: dict[str, str], refit: bool) -> dict:
    """Everything that shaped a recipe's folds, as a JSON-able dict (its hash names the folder)."""
    fn = recipe.fn
    return {
        "recipe": name,
        "function": getattr(fn, "__qualname__", "?"),  # with its source's hash; not the module's name, which for
                                                         # an adapter loaded from a file differs between processes
        "function_source": function_sha1(fn),
        "options": options_dict(options),
        "seed": seed,
        "quick": settings.quick,
        "from_scratch": settings.from_scratch,
        "device": settings.device,  # "cuda" or "cpu": precision and some recipes' defaults follow it
        "weights": file_identity(settings.weights),
        "n_folds": int(folds.max()) + 1,
        "folds": folds_digest(folds),
        "refit": refit,
        "data": data,
        "adapter": {"class": type(adapter).__qualname__, "source": source_sha1(type(adapter))},
        "code": code_version(),
        "needs": needs,  # the config hashes of the recipes whose outputs this one reads
    }


def differences(old: dict, new: dict, prefix: str = "") -> list[str]:
    """Human-readable differences between two configs: ``["options.epochs: 3 -> 8", ...]``."""
    out = []
    for key in sorted(set(old) | set(new)):
        a, b = old.get(key), new.get(key)
        if isinstance(a, dict) and isinstance(b, dict):
            out += differences(a, b, f"{prefix}{key}.")
        elif a != b:
            out.append(f"{prefix}{key}: {a!r} -> {b!r}")
    return out
