"""The run configuration is declared once: kitbox.run's keywords are RunConfig's fields, and submit.py's flags are
generated from the same fields, so a setting added to one is in the other."""
from dataclasses import fields

import pytest

import kitbox
from kitbox.cli import build_parser
from kitbox.errors import InputError
from kitbox.pipeline.config import RunConfig, from_args


def test_every_run_setting_with_a_flag_is_on_the_command_line_with_its_help():
    parser = build_parser()
    by_dest = {a.dest: a for a in parser._actions}
    for f in fields(RunConfig):
        if "flag" in f.metadata:
            action = by_dest[f.name]
            assert action.option_strings == [f.metadata["flag"]] and action.help == f.metadata["help"]


def test_flags_parse_into_the_config_the_keywords_make():
    args = build_parser().parse_args(["digits", "--folds", "0,2", "--set", "epochs=3", "--set", "cnn.lr=1e-3",
                                      "--quick", "--seed", "7", "--ray-gpus", "0.5"])
    assert from_args(args) == RunConfig(folds="0,2", options={"epochs": "3", "cnn.lr": "1e-3"}, quick=True, seed=7,
                                        ray_gpus=0.5)
    assert from_args(build_parser().parse_args(["digits"])) == RunConfig()  # the flags' defaults are the fields'


def test_keywords_change_a_config_and_a_wrong_name_is_named():
    base = RunConfig(quick=True, seed=3)
    assert RunConfig.of(base, seed=5, data=None) == RunConfig(quick=True, seed=5)  # data=None keeps the config's
    with pytest.raises(TypeError, match=r"unknown run setting\(s\) \['quik'\]"):
        kitbox.run("digits", quik=True)
    with pytest.raises(InputError, match="--set 'epochs': write KEY=VALUE"):
        from_args(build_parser().parse_args(["digits", "--set", "epochs"]))
