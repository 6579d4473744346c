"""Finding a competition adapter: a slug or alias of an installed competition, ``path/to/file.py[:Class]`` or
``module:Class``.

Installed competitions are the adapters in the ``competitions`` package beside kitbox (the built-in four) and
the ``kitbox.competitions`` entry points of any pip-installed package (``my-slug = "my_pkg.comp:MyComp"``).
Listing them reads the adapters' source (slug, aliases, metric) without importing anything, so ``--help`` stays
instant; an adapter is imported only when it runs.
"""
from __future__ import annotations

import ast
import difflib
import hashlib
import importlib
import importlib.util
import inspect
import sys
from dataclasses import dataclass
from pathlib import Path

from kitbox.errors import InputError

ENTRY_POINT_GROUP = "kitbox.competitions"


@dataclass(frozen=True)
class Entry:
    """An installed competition, as its source declares it."""

    slug: str
    target: str  # "module:Class"
    aliases: tuple[str, ...] = ()
    metric: str | None = None
    title: str = ""
    origin: str = "built-in"  # or the distribution that declared the entry point


def _constant(node):
    try:
        return ast.literal_eval(node)
    except (ValueError, SyntaxError, TypeError):
        return None


def classes_in_source(path: Path) -> list[dict]:
    """Class-level string/tuple attributes of each class in a file: ``{"name", "slug", "aliases", ...}``."""
    try:
        tree = ast.parse(Path(path).read_text(encoding="utf-8"))
    except (OSError, SyntaxError, UnicodeDecodeError):
        return []
    found = []
    for node in tree.body:
        if not isinstance(node, ast.ClassDef):
            continue
        attrs = {"name": node.name}
        for stmt in node.body:
            targets = stmt.targets if isinstance(stmt, ast.Assign) else [getattr(stmt, "target", None)]
            for t in targets:
                if isinstance(t, ast.Name) and getattr(stmt, "value", None) is not None:
                    attrs[t.id] = _constant(stmt.value)
        found.append(attrs)
    return found


def _builtin_entries() -> list[Entry]:
    spec = importlib.util.find_spec("competitions")
    if spec is None or not spec.origin:
        return []
    folder = Path(spec.origin).parent
    entries = []
    for path in sorted(folder.glob("*.py")):
        for attrs in classes_in_source(path):
            if isinstance(attrs.get("slug"), str) and attrs["slug"]:
                entries.append(Entry(attrs["slug"], f"competitions.{path.stem}:{attrs['name']}",
                                     tuple(attrs.get("aliases") or ()), attrs.get("metric_name"),
                                     attrs.get("title") or ""))
    return entries


def _entry_point_entries() -> list[Entry]:
    from importlib.metadata import entry_points

    entries = []
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        module, _, cls = ep.value.partition(":")
        attrs = {}
        try:
            spec = importlib.util.find_spec(module)
            if spec is not None and spec.origin:
                attrs = next((a for a in classes_in_source(Path(spec.origin)) if a["name"] == cls), {})
        except (ImportError, ValueError):
            pass
        dist = getattr(getattr(ep, "dist", None), "name", "") or "an installed package"
        entries.append(Entry(ep.name, ep.value, tuple(attrs.get("aliases") or ()), attrs.get("metric_name"),
                             attrs.get("title") or "", dist))
    return entries


def entries() -> dict[str, Entry]:
    """Every installed competition by slug (entry points may add to, not replace, the built-ins)."""
    table: dict[str, Entry] = {}
    for entry in _builtin_entries() + _entry_point_entries():
        table.setdefault(entry.slug, entry)
    return table


def aliases() -> dict[str, str]:
    return {alias: e.slug for e in entries().values() for alias in e.aliases}


def resolve(name: str) -> Entry:
    """The installed competition for a slug or alias; an unknown name gets "did you mean" and the list."""
    table, short = entries(), aliases()
    slug = short.get(name, name)
    if slug in table:
        return table[slug]
    known = sorted(table) + sorted(short)
    close = difflib.get_close_matches(name, known, n=3, cutoff=0.6)
    hint = f"; did you mean {' or '.join(repr(c) for c in close)}?" if close else ""
    raise InputError(f"unknown competition {name!r}{hint} Known: {', '.join(known)}; or give your adapter's file "
                     "(path/to/my_comp.py) or module:Class")


def looks_like_path(name: str) -> bool:
    base = name.split(":")[0]
    return base.endswith(".py") or "/" in base or "\\" in base


def load_file(path: Path):
    """Import a Python file as a module, registered under a name unique to the file and its version (so its
    classes pickle for Ray, and an edited file is imported afresh)."""
    path = Path(path).resolve()
    if not path.is_file():
        raise InputError(f"adapter file {path} does not exist")
    st = path.stat()  # an edited file is a new module: a notebook re-running kitbox.run sees the edit
    key = hashlib.sha1(f"{path}:{st.st_mtime_ns}:{st.st_size}".encode()).hexdigest()[:10]
    name = f"kitbox_adapter_{path.stem}_{key}"
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    sys.path.insert(0, str(path.parent))  # its sibling modules (a features file) import as usual
    try:
        spec.loader.exec_module(module)
    except BaseException:
        del sys.modules[name]
        raise
    return module


def _competition_classes(module):
    from kitbox.adapt.contract import Competition

    return [c for _, c in inspect.getmembers(module, inspect.isclass)
            if issubclass(c, Competition) and c.__module__ == module.__name__]


def load_class(target: str):
    """The adapter class for ``path.py[:Class]`` or ``module:Class`` (a file's one Competition subclass)."""
    base, sep, cls_name = target.rpartition(":")
    if not sep or not cls_name.isidentifier():
        base, cls_name = target, ""
    if base.endswith(".py") or looks_like_path(base):
        module = load_file(Path(base))
    else:
        try:
            module = importlib.import_module(base)
        except ModuleNotFoundError as e:
            raise InputError(f"cannot import {base!r} for competition {target!r}: {e}") from None
    if cls_name:
        cls = getattr(module, cls_name, None)
        if cls is None:
            raise InputError(f"{base} has no class {cls_name!r}")
        return cls
    classes = _competition_classes(module)
    if len(classes) != 1:
        names = [c.__name__ for c in classes]
        raise InputError(f"{base} defines {len(classes)} Competition classes {names}: name one, e.g. {base}:"
                         f"{names[0] if names else 'MyCompetition'}")
    return classes[0]


def get_competition(name):
    """An adapter instance for a slug, an alias, ``path.py[:Class]`` or ``module:Class``."""
    from kitbox.adapt.contract import Competition

    if isinstance(name, Competition):
        return name
    if isinstance(name, type) and issubclass(name, Competition):
        return name()
    name = str(name)
    if looks_like_path(name) or (":" in name and name.split(":")[0] not in entries()):
        return load_class(name)()
    return load_class(resolve(name).target)()
