"""Issue 30, item 6: every numeric option of every command (atinuke, workbench, probes) is validated in one place
(``atinuke.validation``, by destination name). The suite enumerates them from the parsers themselves, so a new
option is covered as soon as it exists, and feeds each hostile values -- negative, zero, huge, nan, inf, beyond
64 bits: exit 2, one line, nothing written."""
from __future__ import annotations

import argparse
import contextlib
import importlib
import io
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from atinuke import validation
from atinuke.cli import ATINUKE_COMMANDS, run_cli
from atinuke.errors import UserInputError
from probes.cli import PROBES_COMMANDS
from workbench.cli import COMMANDS as WORKBENCH_COMMANDS

PROGRAMS = {"atinuke": ATINUKE_COMMANDS, "workbench": WORKBENCH_COMMANDS, "probes": PROBES_COMMANDS}
RULES = ("POSITIVE_INTS", "NON_ZERO_INTS", "POSITIVE_FLOATS", "NON_NEGATIVE", "RATES", "OPEN_SHARES", "SHARES",
         "CORRELATIONS", "SEEDS")


def _commands() -> list[tuple[str, list[str], argparse.ArgumentParser]]:
    """(program, command path, the command's own parser) for every (sub)command."""
    found = []

    def walk(prog: str, path: list[str], parser: argparse.ArgumentParser) -> None:
        subs = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
        if not subs:
            found.append((prog, path, parser))
        for sub in subs:
            for name, child in sub.choices.items():
                walk(prog, [*path, name], child)

    for prog, commands in PROGRAMS.items():
        for name, (module, _) in commands.items():
            parser = argparse.ArgumentParser(prog=f"{prog} {name}")
            importlib.import_module(module).add_arguments(parser)
            walk(prog, [name], parser)
    return found


COMMANDS = _commands()
OPTIONS = [(prog, path, action.option_strings[-1], action.dest, action.type)
           for prog, path, parser in COMMANDS for action in parser._actions
           if action.option_strings and action.type in (int, float)]


def _rules(dest: str) -> set[str]:
    return {rule for rule in RULES if dest in getattr(validation, rule)}


def test_every_numeric_option_has_a_rule():
    assert len(OPTIONS) > 60  # the enumeration found the commands' options
    unruled = sorted({f"{' '.join([prog, *path])} {flag}" for prog, path, flag, dest, _ in OPTIONS
                      if not _rules(dest)})
    assert not unruled, f"numeric options with no validation rule in atinuke/validation.py: {unruled}"


def _hostile(dest: str, kind: type) -> list[str]:
    """Values every rule refuses for this option, whatever its rule."""
    values = ["nan", "inf", "-inf", "1e999"] if kind is float else [str(2**64 + 1), str(-(2**64) - 7), str(10**40)]
    rules = _rules(dest)
    if rules & {"POSITIVE_INTS", "POSITIVE_FLOATS", "OPEN_SHARES", "SHARES"}:
        values += ["0", "-1"]
    if rules & {"NON_NEGATIVE", "RATES", "CORRELATIONS", "SEEDS"}:
        values += ["-1"]
    if rules & {"NON_ZERO_INTS"}:
        values += ["0"]
    if rules & {"RATES", "OPEN_SHARES"}:
        values += ["1"]
    if rules & {"SHARES", "CORRELATIONS"}:
        values += ["1.5"]
    if rules & {"SEEDS"}:
        values += [str(2**32)]
    return values


def _argv(prog: str, path: list[str], flag: str, value: str, out: Path) -> list[str]:
    """A command line that argparse accepts: required options get a placeholder (``--out`` the test's path)."""
    parser = next(p for pr, pa, p in COMMANDS if pr == prog and pa == path)
    argv = [*path]
    for action in parser._actions:
        if not action.option_strings or action.option_strings[-1] == flag:
            continue
        name = action.option_strings[-1]
        if name == "--out":
            argv += [name, str(out)]
        elif action.required:
            argv += [name, str(action.choices[0]) if action.choices else "placeholder"]
    return [*argv, f"{flag}={value}"]


def _run(prog: str, argv: list[str]) -> tuple[int, list[str]]:
    stderr = io.StringIO()
    with contextlib.redirect_stderr(stderr):
        code = run_cli(prog, PROGRAMS[prog], argv)
    return code, stderr.getvalue().strip().splitlines()


@pytest.mark.parametrize("prog, path, flag, dest, kind", OPTIONS,
                         ids=[f"{o[0]}-{'-'.join(o[1])}{o[2]}" for o in OPTIONS])
def test_each_numeric_option_refuses_each_hostile_value(tmp_path, prog, path, flag, dest, kind):
    for value in _hostile(dest, kind):
        out = tmp_path / "out"
        code, lines = _run(prog, _argv(prog, path, flag, value, out))
        assert code == 2 and len(lines) == 1, (flag, value, lines)
        assert flag in lines[0] or value in lines[0], (flag, value, lines)
        assert "Traceback" not in lines[0] and not out.exists(), (flag, value)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_fuzz_any_option_any_number(tmp_path_factory, data):
    """Random numbers (any magnitude, any sign, as text argparse accepts) on any numeric option: either valid
    under the option's rule, or one line and exit 2 before anything is written -- never a traceback."""
    prog, path, flag, dest, kind = data.draw(st.sampled_from(OPTIONS), label="option")
    number = data.draw(st.one_of(st.integers(min_value=-(2**80), max_value=2**80),
                                 st.floats(allow_nan=True, allow_infinity=True, width=64)) if kind is float
                       else st.integers(min_value=-(2**80), max_value=2**80), label="number")
    args = argparse.Namespace(**{dest: kind(number) if kind is float else number})
    try:
        validation.check_args(args)
    except UserInputError as error:
        assert "\n" not in str(error) and flag.lstrip("-").replace("-", "_") in str(error).replace("-", "_")
        return
    rules = _rules(dest)
    value = float(number)
    assert value == value and abs(value) != float("inf")
    assert abs(number) <= validation.MAX_INT if isinstance(number, int) else True
    if rules & {"POSITIVE_INTS", "POSITIVE_FLOATS"}:
        assert value > 0
    if rules & {"NON_NEGATIVE", "SEEDS"}:
        assert value >= 0
    if rules & {"SEEDS"}:
        assert value <= validation.MAX_SEED
