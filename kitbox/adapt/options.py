"""Recipe options: each recipe declares a frozen dataclass of typed fields with defaults; ``--set KEY=VALUE`` and
``options={...}`` are parsed and checked against it before any training."""
from __future__ import annotations

import dataclasses
import typing
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from kitbox.adapt.contract import Recipe


class OptionError(ValueError):
    """An unknown recipe option or a value of the wrong type; the message lists the valid options."""


def option_types(options: type) -> dict[str, Any]:
    hints = typing.get_type_hints(options)
    return {f.name: hints.get(f.name, Any) for f in dataclasses.fields(options)}


def describe_options(r: Recipe) -> str:
    defaults = dataclasses.asdict(r.make_options()) if dataclasses.fields(r.options) else {}
    if not defaults:
        return "(none)"
    return ", ".join(f"{k}={v!r}" for k, v in defaults.items())


_TRUE, _FALSE = {"true", "yes", "1", "on"}, {"false", "no", "0", "off"}


def _convert(key: str, value, annotation, recipe_name: str):
    """``value`` (text from the command line, or a Python value) as the option's declared type."""
    args = typing.get_args(annotation)
    optional = type(None) in args
    kinds = [a for a in args if a is not type(None)] or [annotation]
    if value is None or (isinstance(value, str) and value.strip().lower() == "none"):
        if optional:
            return None
        raise OptionError(f"option {recipe_name}.{key} cannot be None")
    for kind in kinds:
        try:
            return _as_kind(value, kind)
        except (TypeError, ValueError):
            continue
    names = " or ".join(getattr(k, "__name__", str(k)) for k in kinds)
    raise OptionError(f"option {recipe_name}.{key}={value!r}: expected {names}")


def _as_kind(value, kind):
    if kind is Any:
        return value
    if kind is bool:
        if isinstance(value, bool):
            return value
        text = str(value).strip().lower()
        if text in _TRUE or text in _FALSE:
            return text in _TRUE
        raise ValueError(value)
    if kind is int:
        if isinstance(value, bool) or (isinstance(value, float) and not value.is_integer()):
            raise ValueError(value)
        return int(value)
    if kind is float:
        if isinstance(value, bool):
            raise ValueError(value)
        return float(value)
    if kind is str:
        return str(value)
    raise TypeError(f"unsupported option type {kind}")


def resolve_options(recipes: dict[str, Recipe], given: dict[str, Any]) -> dict[str, Any]:
    """Each recipe's options instance from ``given`` (``{"epochs": "3", "cnn.lr": 0.01}``).

    A plain key sets that option in every selected recipe that declares it; ``recipe.key`` sets it in one. A key
    no selected recipe declares, or a value of the wrong type, is an :class:`OptionError` naming the valid options.
    """
    per_recipe: dict[str, dict] = {name: {} for name in recipes}
    for key, value in given.items():
        target, _, opt = key.rpartition(".")
        names = [target] if target else list(recipes)
        if target and target not in recipes:
            if f"{target}_from_scratch" in recipes:  # --from-scratch renamed it; its options are the same
                target, names = f"{target}_from_scratch", [f"{target}_from_scratch"]
            else:
                raise OptionError(f"--set {key}={value}: no recipe {target!r} in this run (recipes: "
                                  f"{', '.join(recipes)})")
        hits = [n for n in names if opt in option_types(recipes[n].options)]
        if not hits:
            valid = "; ".join(f"{n}: {describe_options(r)}" for n, r in recipes.items())
            raise OptionError(f"--set {key}={value}: unknown option {opt!r}. Valid options: {valid}")
        for n in hits:
            per_recipe[n][opt] = _convert(opt, value, option_types(recipes[n].options)[opt], n)
    return {name: recipes[name].make_options(values) for name, values in per_recipe.items()}
