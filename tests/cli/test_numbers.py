"""``cli.numbers``: every numeric option of every command is bounded, and the bounds name real options."""
from __future__ import annotations

import argparse

import pytest

from saew.cli import numbers
from saew.cli.main import parser


def _actions():
    for p in numbers.parsers(parser()):
        for a in p._actions:
            yield p, a


def test_no_numeric_option_is_left_unbounded():
    loose = [(p.prog, a.dest) for p, a in _actions() if a.type in (int, float)]
    assert loose == []


def test_every_bound_names_an_option_some_command_has():
    options = {s for _, a in _actions() for s in a.option_strings}
    assert set(numbers.INT_BOUNDS) | set(numbers.FLOAT_BOUNDS) <= options


@pytest.mark.parametrize("text,ok", [("0", True), ("2147483647", True), ("2147483648", False), ("-1", False),
                                     ("1e3", False), ("9" * 5000, False), ("x", False)])
def test_int_type(text, ok):
    parse = numbers.int_type(*numbers.INT_DEFAULT)
    if ok:
        assert parse(text) == int(text)
    else:
        with pytest.raises(argparse.ArgumentTypeError):
            parse(text)


@pytest.mark.parametrize("text,ok", [("0.5", True), ("1", True), ("nan", False), ("inf", False), ("1.5", False), ("-0.1", False)])
def test_float_type(text, ok):
    parse = numbers.float_type(0.0, 1.0)
    if ok:
        assert parse(text) == float(text)
    else:
        with pytest.raises(argparse.ArgumentTypeError):
            parse(text)
