"""The competition registry: Kaggle slug -> "module:Class" of its adapter, plus short aliases.

Adapters are imported only when asked for (they pull in torch), so listing them stays instant.
"""
from __future__ import annotations

import ast
import importlib
import importlib.util
from pathlib import Path

COMPETITIONS: dict[str, str] = {
    "rossmann-store-sales": "competitions.rossmann:Rossmann",
    "dogs-vs-cats-redux-kernels-edition": "competitions.dogs_vs_cats:DogsVsCats",
    "digit-recognizer": "competitions.digit_recognizer:DigitRecognizer",
    "nlp-getting-started": "competitions.disaster_tweets:DisasterTweets",
}

ALIASES: dict[str, str] = {
    "rossmann": "rossmann-store-sales",
    "dogs-vs-cats": "dogs-vs-cats-redux-kernels-edition",
    "digits": "digit-recognizer",
    "disaster-tweets": "nlp-getting-started",
}

SAMPLES = Path(__file__).resolve().parent / "samples"


def resolve(name: str) -> str:
    """The Kaggle slug for a slug or alias; a clear error listing the known names otherwise."""
    slug = ALIASES.get(name, name)
    if slug not in COMPETITIONS:
        known = ", ".join(sorted(COMPETITIONS) + [f"{a} (= {s})" for a, s in sorted(ALIASES.items())])
        raise KeyError(f"unknown competition {name!r}; known: {known}")
    return slug


def module_file(slug: str) -> Path:
    module = COMPETITIONS[slug].split(":")[0]
    return Path(__file__).resolve().parents[1].joinpath(*module.split(".")).with_suffix(".py")


def is_available(slug: str) -> bool:
    """Whether the adapter's module exists (without importing it)."""
    return importlib.util.find_spec(COMPETITIONS[slug].split(":")[0]) is not None


def metric_name(slug: str) -> str | None:
    """The adapter's ``metric_name``, read from its source without importing it (for an instant --help)."""
    class_name = COMPETITIONS[slug].split(":")[1]
    try:
        tree = ast.parse(module_file(slug).read_text(encoding="utf-8"))
    except (OSError, SyntaxError):
        return None
    for node in ast.walk(tree):
        if isinstance(node, ast.ClassDef) and node.name == class_name:
            for stmt in node.body:
                targets = [t.id for t in getattr(stmt, "targets", [getattr(stmt, "target", None)]) if isinstance(t, ast.Name)]
                value = getattr(stmt, "value", None)
                if "metric_name" in targets and isinstance(value, ast.Constant):
                    return value.value
    return None


def get_competition(name: str):
    """An instance of the adapter for a slug or alias, imported on first use."""
    slug = resolve(name)
    module_name, class_name = COMPETITIONS[slug].split(":")
    if not is_available(slug):
        raise ModuleNotFoundError(f"the adapter for {slug} ({module_name.replace('.', '/')}.py) is not written yet")
    return getattr(importlib.import_module(module_name), class_name)()
