"""`orcac --help` and every `orcac COMMAND --help`: each argument and option has a line of its
own, and one that has a default says it (issue 18, item 22). A flag added without help fails here."""

from __future__ import annotations

import argparse

import pytest

from orcac.cli import build_parser


def _parsers() -> dict[str, argparse.ArgumentParser]:
    top = build_parser()
    found = {"orcac": top}
    for action in top._actions:
        if isinstance(action, argparse._SubParsersAction):
            found.update({f"orcac {name}": parser for name, parser in action.choices.items()})
    return found


PARSERS = _parsers()


def _described(parser: argparse.ArgumentParser):
    for action in parser._actions:
        if isinstance(action, (argparse._HelpAction, argparse._VersionAction)):
            continue
        yield action


@pytest.mark.parametrize("name", sorted(PARSERS))
def test_every_argument_and_option_has_help(name):
    parser = PARSERS[name]
    missing = [
        action.option_strings[0] if action.option_strings else action.metavar or action.dest
        for action in _described(parser)
        if not action.help or action.help == argparse.SUPPRESS
    ]
    assert not missing, f"{name}: no help for {', '.join(missing)}"


@pytest.mark.parametrize("name", sorted(PARSERS))
def test_an_option_with_a_default_says_it(name):
    parser = PARSERS[name]
    silent = []
    for action in _described(parser):
        if action.default in (None, False, argparse.SUPPRESS) or isinstance(action, argparse._SubParsersAction):
            continue
        shown = action.help % {"default": action.default}
        if f"default: {action.default}" not in shown:
            silent.append(action.option_strings[0])
    assert not silent, f"{name}: the help of {', '.join(silent)} does not say its default"


def test_the_help_of_every_command_prints(capsys):
    for name in PARSERS:
        with pytest.raises(SystemExit):
            PARSERS[name].parse_args(["--help"])
    out = capsys.readouterr().out
    assert "SPEC        one or more .orca specs, rewritten in place" in out
    assert "(default: jsonl)" in out and "(default: train)" in out
