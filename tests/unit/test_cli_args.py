"""Argument handling of the CLI, in process: ``--arg K=V`` parsing and usage errors (exit 2)."""

from __future__ import annotations

from typing import Any

import pytest

from securehub.cli.app import EXIT_USAGE, main, parse_kv


@pytest.mark.parametrize(
    ("item", "value"),
    [
        ("pretrained=true", True),
        ("pretrained=false", False),
        ("n=8", 8),
        ("x=1.5", 1.5),
        ('name="x"', "x"),
        ("dims=[1,2]", [1, 2]),
        ('cfg={"a": null}', {"a": None}),
        ("name=resnet", "resnet"),
        ("url=a=b=c", "a=b=c"),
        ("empty=", ""),
        ("s=[1,", "[1,"),
        ("none=null", None),
    ],
)
def test_parse_kv_json_or_string(item: str, value: Any) -> None:
    key = item.partition("=")[0]
    assert parse_kv([item]) == {key: value}


def test_parse_kv_many_and_last_wins() -> None:
    assert parse_kv(["a=1", "b=x", "a=2"]) == {"a": 2, "b": "x"}
    assert parse_kv([]) == {}
    assert parse_kv(None) == {}


@pytest.mark.parametrize("item", ["noequals", "=1", "1a=2", "a-b=3", "a b=1", "a.b=1"])
def test_parse_kv_refuses_invalid_keys(item: str) -> None:
    with pytest.raises(ValueError, match="K=V"):
        parse_kv([item])


@pytest.mark.parametrize(
    "argv",
    [
        [],
        ["frobnicate"],
        ["lock", "--nope"],
        ["sign"],
        ["cache"],
        ["cache", "explode"],
        ["scan"],
        ["load", "acme/models:v1"],
    ],
)
def test_usage_errors_exit_2(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main(argv)

    assert info.value.code == EXIT_USAGE
    err = capsys.readouterr().err
    assert "error[usage]:" in err


def test_check_refuses_combination_with_upgrade(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["lock", "--check", "--upgrade"]) == EXIT_USAGE
    assert capsys.readouterr().err.startswith("error[usage]:")


def test_bad_arg_is_usage_error_before_anything_runs(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["lock", "acme/models:v1", "--arg", "1x=2"]) == EXIT_USAGE
    assert capsys.readouterr().err.startswith("error[usage]: --arg expects K=V")
