"""Argument types of the command line: numbers refused in one line naming what was expected;
and the check of an output file ``-o`` names."""

from __future__ import annotations

import argparse
import os

from metaloop.errors import UserError


def positive_int(text: str) -> int:
    """An integer >= 1 (``--workers``, ``--nodes`` ...)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {value}")
    return value


def non_negative_int(text: str) -> int:
    """An integer in [0, 2^63) (``--seed``, ``--at-generation``)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a non-negative integer, got {text!r}") from None
    if not 0 <= value < 2**63:
        raise argparse.ArgumentTypeError(f"expected an integer in [0, 2^63), got {value}")
    return value


def check_output_file(path: str) -> None:
    """A file ``-o`` may write (atomically, through a temporary file beside it)."""
    parent = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(parent):
        raise UserError(f"-o: directory does not exist: {parent}")
    if os.path.isdir(path):
        raise UserError(f"-o: {path} is a directory; expected a file name")
    if not os.access(parent, os.W_OK):
        raise UserError(f"-o: cannot write in {parent} (permission denied)")
