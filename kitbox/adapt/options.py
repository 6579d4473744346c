"""Recipe options: each recipe declares a frozen dataclass of typed fields with defaults; ``--set KEY=VALUE`` and
``options={...}`` are parsed and checked against it before any training.

The types an option may have: ``bool``, ``int``, ``float``, ``str``, ``Any``, ``Literal["a", "b"]`` (one of those
values), ``tuple[int, ...]`` (and of ``float`` or ``str``: ``"1,2,3"``, a list or one value), an ``X | None`` of
any of them, a union tried in order (``Literal["auto"] | tuple[int, ...]``), and ``Annotated[T, Syntax(...)]``
for an option written in a syntax of its own (``"Store@Elapsed"``): its parser turns the text into a ``T`` and
says what is wrong with text that is not one. So a recipe's body only ever sees values of the declared types."""
from __future__ import annotations

import dataclasses
import types
import typing
from typing import TYPE_CHECKING, Annotated, Any, Callable, Literal

if TYPE_CHECKING:
    from kitbox.adapt.contract import Recipe


class OptionError(ValueError):
    """An unknown recipe option or a value of the wrong type; the message lists the valid options."""


@dataclasses.dataclass(frozen=True)
class Syntax:
    """``Annotated[T, Syntax(parse, show, "what")]``: text is ``parse(text) -> T`` (a ValueError says what is wrong),
    ``show(value) -> text`` writes it back for ``--help``, ``what`` names the syntax in errors."""

    parse: Callable[[str], Any]
    show: Callable[[Any], str]
    what: str


def option_types(options: type) -> dict[str, Any]:
    hints = typing.get_type_hints(options, include_extras=True)  # extras: keep Annotated's Syntax
    return {f.name: hints.get(f.name, Any) for f in dataclasses.fields(options)}


def describe_options(r: Recipe) -> str:
    if not dataclasses.fields(r.options):
        return "(none)"
    values, kinds = r.make_options(), option_types(r.options)
    return ", ".join(f"{f.name}={_show(getattr(values, f.name), kinds[f.name])}" for f in dataclasses.fields(values))


def _show(value, kind) -> str:
    """An option's value as it would be written after ``--set KEY=``."""
    syntax = _syntax(kind)
    if syntax is not None and value is not None:
        return repr(syntax.show(value))
    if isinstance(value, tuple):
        return repr(",".join(str(v) for v in value))
    return repr(value)


def _syntax(kind) -> Syntax | None:
    for k in _alternatives(kind):
        if typing.get_origin(k) is Annotated:
            return next((m for m in k.__metadata__ if isinstance(m, Syntax)), None)
    return None


def _alternatives(kind) -> list:
    """The members of a union (``A | B``, ``Optional[A]``), else the kind itself."""
    if typing.get_origin(kind) in (typing.Union, types.UnionType):
        return list(typing.get_args(kind))
    return [kind]


_TRUE, _FALSE = {"true", "yes", "1", "on"}, {"false", "no", "0", "off"}


def _convert(key: str, value, annotation, recipe_name: str):
    """``value`` (text from the command line, or a Python value) as the option's declared type."""
    alternatives = _alternatives(annotation)
    kinds = [a for a in alternatives if a is not type(None)]
    # "--set trend=" turns off an optional option of a syntax of its own ("" is no GROUP@TIME_COLUMN)
    blank = isinstance(value, str) and not value.strip() and _syntax(annotation) is not None
    blank = blank and type(None) in alternatives
    if value is None or blank or (isinstance(value, str) and value.strip().lower() == "none"):
        if type(None) in alternatives or annotation is Any:
            return None
        raise OptionError(f"option {recipe_name}.{key} cannot be None")
    reasons = []
    for kind in kinds:
        try:
            return _as_kind(value, kind)
        except (TypeError, ValueError) as e:
            reasons.append(str(e))
    syntax = _syntax(annotation)
    if syntax is not None and isinstance(value, str) and reasons and reasons[-1]:
        raise OptionError(f"option {recipe_name}.{key}={value!r}: {reasons[-1]}; write it {syntax.what}")
    names = " or ".join(_kind_name(k) for k in kinds)
    raise OptionError(f"option {recipe_name}.{key}={value!r}: expected {names}")


def _kind_name(kind) -> str:
    origin, args = typing.get_origin(kind), typing.get_args(kind)
    if origin is Literal:
        return "one of " + ", ".join(repr(a) for a in args)
    if origin is tuple and args[-1] is Ellipsis:
        return f"a comma-separated list of {_kind_name(args[0])}"
    if origin is tuple:
        return "a comma-separated " + ", ".join(_kind_name(a) for a in args)
    if origin is Annotated:
        syntax = _syntax(kind)
        return syntax.what if syntax else _kind_name(args[0])
    return getattr(kind, "__name__", str(kind))


def _as_kind(value, kind):
    origin, args = typing.get_origin(kind), typing.get_args(kind)
    if origin is Annotated:
        syntax = _syntax(kind)
        if syntax is not None and isinstance(value, str):
            return syntax.parse(value)
        if isinstance(args[0], type) and isinstance(value, args[0]):  # already parsed (a default, configure's)
            return value
        return _as_kind(value, args[0])
    if origin is Literal:
        return _as_literal(value, args)
    if origin is tuple:
        return _as_tuple(value, args)
    if origin in (typing.Union, types.UnionType):
        return _convert("", value, kind, "")  # a union nested in Annotated or a tuple: its members in order
    return _as_plain(value, kind)


def _as_literal(value, allowed: tuple):
    if value in allowed and type(value) in {type(a) for a in allowed}:  # True is not the literal 1
        return value
    text = str(value).strip()
    for a in allowed:
        if str(a) == text:
            return a
    raise ValueError(f"expected one of {', '.join(repr(a) for a in allowed)}")


def _as_tuple(value, args: tuple) -> tuple:
    """``tuple[X, ...]`` of any length, or ``tuple[X, Y]`` of exactly those kinds."""
    if isinstance(value, str):
        items = [v.strip() for v in value.split(",") if v.strip()]
    elif isinstance(value, (list, tuple)):
        items = list(value)
    else:
        items = [value]
    if len(args) == 2 and args[1] is Ellipsis:
        return tuple(_as_kind(v, args[0]) for v in items)
    if len(items) != len(args):
        raise ValueError(f"expected {len(args)} values, got {len(items)}")
    return tuple(_as_kind(v, kind) for v, kind in zip(items, args))


def _as_plain(value, kind):
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
