"""The layout is the architecture: data flows one way, and each layer imports only the layers under it.

training (the Learner and what it needs) and the modality packages (tabular, vision, text) know nothing of
competitions or runs; io knows nothing of training; nothing under kitbox imports a competition. Every import is
read from the source (module-level and inside functions), so a lazy import cannot hide a wrong arrow."""
from __future__ import annotations

import ast
import importlib
from pathlib import Path

import pytest

import kitbox

PACKAGE = Path(kitbox.__file__).parent

FORBIDDEN = {  # package -> what it must not import
    "training": ("kitbox.adapt", "kitbox.pipeline", "kitbox.recipes", "kitbox.cli"),
    "tabular": ("kitbox.adapt", "kitbox.pipeline", "kitbox.recipes", "kitbox.cli"),
    "vision": ("kitbox.adapt", "kitbox.pipeline", "kitbox.recipes", "kitbox.cli"),
    "text": ("kitbox.adapt", "kitbox.pipeline", "kitbox.recipes", "kitbox.cli"),
    "io": ("kitbox.adapt", "kitbox.pipeline", "kitbox.recipes", "kitbox.training", "kitbox.cli"),
    "recipes": ("kitbox.pipeline", "kitbox.cli"),
    "": ("competitions",),  # the whole package: kitbox never imports a competition
}


def imported_modules(path: Path) -> set[str]:
    """Every module a file imports, absolute (``from kitbox import cv`` counts as ``kitbox.cv``)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
    return found


def offenders(package: str, forbidden: tuple[str, ...]) -> list[str]:
    root = PACKAGE / package if package else PACKAGE
    bad = []
    for path in sorted(root.rglob("*.py")):
        for module in sorted(imported_modules(path)):
            if any(module == f or module.startswith(f + ".") for f in forbidden):
                bad.append(f"{path.relative_to(PACKAGE.parent)} imports {module}")
    return bad


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_each_layer_imports_only_the_layers_under_it(package):
    assert offenders(package, FORBIDDEN[package]) == []


def test_the_check_sees_a_lazy_import_inside_a_function(tmp_path):
    source = tmp_path / "m.py"
    source.write_text("def f():\n    from kitbox.pipeline import cv\n    from kitbox import adapt\n")
    assert {"kitbox.pipeline.cv", "kitbox.adapt"} <= imported_modules(source)


def test_the_public_names_still_import_from_kitbox():
    for name in kitbox.__all__:
        assert getattr(kitbox, name) is not None
    importlib.import_module("kitbox.pipeline.stages")  # the layer package `training` never shadows kitbox.train
    assert callable(kitbox.train) and kitbox.train.__module__ == "kitbox.pipeline.stages"
