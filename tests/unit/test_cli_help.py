"""The `suretynet` command documents itself: every option has help, and --version works."""

from __future__ import annotations

import argparse

import pytest

from nodes.cli import build_parser, main


def walk(parser: argparse.ArgumentParser, path: str = "suretynet"):
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from walk(sub, f"{path} {name}")
        else:
            yield path, action


def test_every_option_of_every_command_has_help_text():
    missing = [
        f"{path} {'/'.join(action.option_strings) or action.dest}"
        for path, action in walk(build_parser())
        if not action.help and not isinstance(action, argparse._HelpAction)
    ]
    assert missing == []


def test_the_commands_an_operator_needs_exist():
    commands = {path for path, _ in walk(build_parser())}
    for expected in (
        "suretynet network add-node",
        "suretynet node restart",
        "suretynet node change-info",
        "suretynet node rotate-key",
        "suretynet pki renew",
        "suretynet approval list-serials",
        "suretynet approval change-info",
        "suretynet approval revoke-key",
        "suretynet shop catalog",
        "suretynet shop upsert-item",
        "suretynet verification transaction-report",
        "suretynet marketplace transaction",
    ):
        assert expected in commands


def test_version_prints_the_installed_version(capsys: pytest.CaptureFixture[str]):
    with pytest.raises(SystemExit) as exited:
        main(["--version"])
    assert exited.value.code == 0
    assert capsys.readouterr().out.startswith("suretynet 0.")
