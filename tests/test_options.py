"""Recipe options are parsed and checked by the options layer, before any training: a recipe's body sees values of
its declared types, and a wrong value fails naming the recipe, the option, the value and what was expected."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Literal

import pytest

from kitbox.adapt.contract import recipe
from kitbox.adapt.options import OptionError, Syntax, describe_options, resolve_options


def _pair(text: str) -> tuple[str, int]:
    name, sep, count = text.partition("@")
    if not sep or not count.strip().isdigit():
        raise ValueError(f"no '@COUNT' in {text!r}")
    return name.strip(), int(count)


@dataclass(frozen=True)
class ToyOptions:
    mode: Literal["plain", "gradual"] = "plain"
    loader: Literal["auto", "on", "off"] = "auto"
    cs: tuple[float, ...] = (0.01, 0.1, 1.0)
    sizes: Literal["auto"] | tuple[int, ...] = "auto"
    names: tuple[str, ...] = ()
    bs: int | None = None
    pair: Annotated[tuple[str, int], Syntax(_pair, lambda p: f"{p[0]}@{p[1]}", "NAME@COUNT, e.g. 'a@3'")] | None = None


@recipe(options=ToyOptions)
def toy(ctx):
    raise AssertionError("options are resolved without training")


def resolve(**given):
    return resolve_options({"toy": toy}, given)["toy"]


def test_a_literal_takes_its_values_and_names_them_when_given_another():
    assert resolve(mode="gradual").mode == "gradual"
    assert resolve(loader=" off ").loader == "off"
    with pytest.raises(OptionError, match=r"toy\.mode='slow'.*'plain', 'gradual'"):
        resolve(mode="slow")


def test_a_tuple_option_parses_text_a_python_list_or_one_value():
    assert resolve(cs="0.003, 0.03,1").cs == (0.003, 0.03, 1.0)
    assert resolve(cs=[1, 2]).cs == (1.0, 2.0)
    assert resolve(cs=0.5).cs == (0.5,)
    assert resolve(names="a,b").names == ("a", "b")
    with pytest.raises(OptionError, match=r"toy\.cs='a,b'.*comma-separated list of float"):
        resolve(cs="a,b")


def test_a_union_tries_its_members_in_order():
    assert resolve(sizes="auto").sizes == "auto"
    assert resolve(sizes="96,128").sizes == (96, 128)
    assert resolve(sizes="").sizes == ()  # the empty list: "no sizes", not "auto"
    with pytest.raises(OptionError, match=r"one of 'auto' or a comma-separated list of int"):
        resolve(sizes="big")


def test_optional_options_take_none_and_others_refuse_it():
    assert resolve(bs="none").bs is None and resolve(bs="64").bs == 64
    with pytest.raises(OptionError, match="toy.mode cannot be None"):
        resolve(mode=None)


def test_an_option_with_a_syntax_of_its_own_is_parsed_and_its_mistake_named():
    assert resolve(pair="x@3").pair == ("x", 3)
    assert resolve(pair=("x", 3)).pair == ("x", 3)  # already parsed: kept
    assert resolve(pair="").pair is None  # "--set pair=" turns it off
    with pytest.raises(OptionError, match=r"toy\.pair='x3': no '@COUNT' in 'x3'; write it NAME@COUNT"):
        resolve(pair="x3")


def test_configure_parses_like_set_and_help_writes_values_back_as_set_takes_them():
    configured = toy.configure(cs="1,2", pair="b@2")
    opts = configured.make_options()
    assert opts.cs == (1.0, 2.0) and opts.pair == ("b", 2)
    text = describe_options(configured)
    assert "cs='1.0,2.0'" in text and "pair='b@2'" in text and "mode='plain'" in text
    with pytest.raises(OptionError, match="toy.loader"):
        toy.configure(loader="maybe")


# ---------------------------------------------------------------------------------------------- the built-in recipes
def test_the_recipes_options_arrive_typed():
    from kitbox.recipes import tabular, text, vision

    typed = resolve_options({"cnn": vision.cnn, "small_cnn": vision.small_cnn, "ulmfit": text.ulmfit},
                            {"cnn.ft_sizes": "96,128", "widths": "8,16", "schedule": "gradual"})
    assert typed["cnn"].ft_sizes == (96, 128) and typed["small_cnn"].widths == (8, 16)
    assert typed["ulmfit"].schedule == "gradual"
    gbm = resolve_options({"lightgbm": tabular.lightgbm}, {"group_stats": "Store;Store+Promo", "trend": "Store@T"})
    assert gbm["lightgbm"].group_stats == (("Store",), ("Store", "Promo"))
    assert (gbm["lightgbm"].trend.keys, gbm["lightgbm"].trend.time) == (("Store",), "T")
    for key, value, named in [("ulmfit.schedule", "slow", "'plain', 'gradual'"),
                              ("small_cnn.device_loader", "yes", "'auto', 'on', 'off'")]:
        with pytest.raises(OptionError, match=named):
            resolve_options({"ulmfit": text.ulmfit, "small_cnn": vision.small_cnn}, {key: value})


def test_a_bad_trend_stops_the_run_before_any_training():
    import kitbox

    with pytest.raises(OptionError, match=r"lightgbm\.trend='Store'.*write it GROUP@TIME_COLUMN"):
        kitbox.prepare("rossmann", recipes=["lightgbm"], options={"trend": "Store"}, quick=True)
