"""The run folder: atomic writes, numpy arrays and JSON files that survive a kill at any moment.

Every file is written to a temporary name in the same folder and renamed over the target,
so a reader sees either the old complete file or the new complete file, never half of one.
"""
from __future__ import annotations

import inspect
import io
import json
import os
import pickle
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any

_ONE_TIME = [0.0]  # seconds this process spent on work cached for every later fold (see one_time_work)


@contextmanager
def one_time_work():
    """Time spent computing something that is cached for every later fold (features, a language model): a
    timed run (``--time-limit``) leaves it out when it estimates what a recipe's next folds cost."""
    start = time.perf_counter()
    try:
        yield
    finally:
        _ONE_TIME[0] += time.perf_counter() - start


def one_time_seconds() -> float:
    """The total of :func:`one_time_work` in this process so far."""
    return _ONE_TIME[0]


def private_tmp(path) -> Path:
    """A temporary name beside ``path`` that no other process uses (Ray workers may write the same folder), with
    ``path``'s suffix kept (savers that pick a format by it)."""
    path = Path(path)
    return path.with_name(f".{path.stem}.{os.getpid()}.tmp{path.suffix}")


def atomic_write_bytes(path, data: bytes) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())  # the bytes are on disk before the rename makes them visible
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def atomic_write_text(path, text: str) -> Path:
    return atomic_write_bytes(path, text.encode("utf-8"))


def save_npy(path, array) -> Path:
    import numpy as np

    buf = io.BytesIO()
    np.save(buf, np.asarray(array), allow_pickle=False)
    return atomic_write_bytes(path, buf.getvalue())


def load_npy(path):
    import numpy as np

    return np.load(path, allow_pickle=False)


def save_object(path, obj: Any) -> Path:
    """A fitted object (a fold's predictor, a blend) pickled by ``torch.save`` (tensors of any device), atomically."""
    import torch

    buf = io.BytesIO()
    torch.save(obj, buf)
    return atomic_write_bytes(path, buf.getvalue())


# What a saved model may be made of: the libraries kitbox's recipes fit with. Anything else a file names (os,
# subprocess, builtins' eval, a module object) is refused before it is called: loading a run folder someone else
# made (a Kaggle dataset) cannot run their code through these files. An allowlist narrows what a crafted file can
# reach; it is not a sandbox.
TRUSTED_PACKAGES = frozenset({
    "kitbox", "torch", "numpy", "scipy", "sklearn", "lightgbm", "pandas", "transformers", "tokenizers", "timm",
    "albumentations", "albucore", "segmentation_models_pytorch", "safetensors", "collections", "copyreg", "_codecs",
    "datetime", "pathlib", "functools", "enum", "re", "_operator", "kernels", "random",
})
SAFE_BUILTINS = frozenset({"set", "frozenset", "dict", "list", "tuple", "slice", "range", "complex", "float", "int",
                           "bool", "str", "bytes", "bytearray", "object", "NoneType"})
REFUSED = frozenset({"torch.load", "torch.storage._load_from_bytes", "torch.hub", "torch.utils.cpp_extension",
                     "torch.jit", "torch.package", "numpy.load", "pandas.read_pickle", "functools.reduce"})


class UntrustedPickle(pickle.UnpicklingError):
    """A saved-model file names something outside what kitbox's recipes save."""


def _member(obj, name: str):
    """``getattr`` as pickles use it: an enum member of its class (``Interpolation.AREA``) or a bound method of an
    object the file built (a pipeline's method). Nothing with a double underscore, nothing else: a file cannot walk
    from an allowed object to what its module imports (``__init__.__globals__``)."""
    value = None if name.startswith("__") else getattr(obj, name, None)
    member = isinstance(obj, type) and isinstance(value, obj)
    if not (member or (inspect.ismethod(value) and value.__self__ is obj)):
        raise UntrustedPickle(f"refusing getattr({type(obj).__name__}, {name!r})")
    return value


class _TrustedUnpickler(pickle.Unpickler):
    trusted: frozenset = frozenset()

    def find_class(self, module: str, name: str):
        import _compat_pickle

        if (module, name) in _compat_pickle.NAME_MAPPING:  # protocol 2 (torch.save) names Python 2's modules
            module, name = _compat_pickle.NAME_MAPPING[(module, name)]
        module = _compat_pickle.IMPORT_MAPPING.get(module, module)
        where = f"{module}.{name}"
        if module == "builtins":
            if name == "getattr":
                return _member
            if name not in SAFE_BUILTINS:
                raise UntrustedPickle(f"refusing builtins.{name}")
            return super().find_class(module, name)
        found = super().find_class(module, name) if module.split(".")[0] in TRUSTED_PACKAGES | self.trusted else None
        owner = getattr(found, "__module__", None) or type(found).__module__
        if (found is None or inspect.ismodule(found) or owner.split(".")[0] not in TRUSTED_PACKAGES | self.trusted
                or any(where == r or where.startswith(r + ".") or owner.startswith(r) for r in REFUSED)):
            raise UntrustedPickle(f"refusing {where}")
        return found


def load_object(path, trusted: tuple[str, ...] = ()) -> Any:
    """What :func:`save_object` saved, its tensors on the CPU (a model moves to its device when it predicts).
    Only the libraries of :data:`TRUSTED_PACKAGES` (and the modules named in ``trusted``: a competitor's recipe
    module) may appear in the file; anything else is an InputError naming it, before it runs."""
    import types

    import torch

    from kitbox.errors import InputError

    unpickler = type("TrustedUnpickler", (_TrustedUnpickler,), {"trusted": frozenset(m.split(".")[0] for m in trusted)})
    module = types.SimpleNamespace(Unpickler=unpickler, load=pickle.load, __name__="kitbox_trusted_pickle")
    try:
        # weights_only=True cannot hold what a fold saves (LightGBM boosters, scikit-learn heads, tokenizers) and
        # torch refuses it beside a pickle_module: the allowlist of _TrustedUnpickler takes its place
        return torch.load(path, map_location="cpu", weights_only=False, pickle_module=module)
    except UntrustedPickle as err:
        raise InputError(f"{path}: {err}, which kitbox's saved models never hold: the file was not written by a "
                         "kitbox run (or names a class of your own: define it in the recipe's module). Delete it "
                         "and train again") from None


def _to_jsonable(obj: Any):
    """numpy scalars/arrays and paths, which ``json`` refuses, as plain Python values."""
    if hasattr(obj, "tolist"):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    if isinstance(obj, (set, tuple)):
        return list(obj)
    return repr(obj)  # a recipe's odd info value must not cost the fold it describes


def write_json(path, obj: Any) -> Path:
    return atomic_write_text(path, json.dumps(obj, indent=2, default=_to_jsonable, allow_nan=True) + "\n")


def read_json(path) -> Any:
    return json.loads(Path(path).read_text(encoding="utf-8"))


def save_config(run_dir, config: dict) -> Path:
    """The resolved configuration of a run, next to its outputs (timm's train script does the same)."""
    return write_json(Path(run_dir) / "config.json", config)


# ---------------------------------------------------------------------------------------------- the ledger


def append_ledger(path, row: dict) -> Path:
    """Add one finished run to the ledger (one JSON object per line), keeping every earlier line."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    old = path.read_bytes() if path.exists() else b""
    line = json.dumps(row, default=_to_jsonable, allow_nan=True) + "\n"
    return atomic_write_bytes(path, old + line.encode("utf-8"))


def read_ledger(path) -> list[dict]:
    path = Path(path)
    if not path.exists():
        return []
    rows = []
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.strip():
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError:
                continue  # a hand-edited line: skip it, keep the rest
    return rows


def update_last_ledger_row(path, **values) -> None:
    rows = read_ledger(path)
    if not rows:
        return
    rows[-1].update(values)
    text = "".join(json.dumps(r, default=_to_jsonable, allow_nan=True) + "\n" for r in rows)
    atomic_write_text(path, text)


def ledger_table(rows: list[dict], competition: str | None = None) -> str:
    """The ledger as a table a person reads: one line per run, newest last."""
    rows = [r for r in rows if competition is None or r.get("competition") == competition]
    if not rows:
        return "no finished runs in the ledger yet"

    def fmt(v):
        return "-" if v is None else f"{v:.5f}" if isinstance(v, float) else str(v)

    lines = [f"{'time':19s}  {'competition':28s}  {'blend':>9s}  {'honest':>9s}  {'public':>8s}  recipes (OOF)"]
    for r in rows:
        recipes = ", ".join(f"{n} {fmt(s)} [{r.get('configs', {}).get(n, '?')}]" for n, s in (r.get("cv") or {}).items())
        quick = " quick" if r.get("quick") else ""
        lines.append(f"{r.get('time', '?'):19s}  {r.get('competition', '?')[:28]:28s}  {fmt(r.get('blend')):>9s}  "
                     f"{fmt(r.get('blend_honest')):>9s}  {fmt(r.get('public_score')):>8s}  {recipes}{quick}")
    return "\n".join(lines)
