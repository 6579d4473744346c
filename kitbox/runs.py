"""The run folder: atomic writes, numpy arrays and JSON files that survive a kill at any moment.

Every file is written to a temporary name in the same folder and renamed over the target,
so a reader sees either the old complete file or the new complete file, never half of one.
"""
from __future__ import annotations

import io
import json
import os
import tempfile
from pathlib import Path
from typing import Any


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
