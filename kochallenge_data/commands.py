"""Shared pieces of the command-line groups: one help layout and one way to add a command.

Every command's help ends with examples (``epilog``), and every handler returns the exit code.
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable
from typing import Any, NoReturn

Handler = Callable[[argparse.Namespace], int]


def help_formatter(prog: str) -> argparse.HelpFormatter:
    """Keep the line breaks of descriptions and examples as written."""
    return argparse.RawDescriptionHelpFormatter(prog, max_help_position=32)


class CliParser(argparse.ArgumentParser):
    """argparse with this CLI's error form: one ``Error: ...`` line and exit 2; the usage is one --help away.

    Subcommand parsers inherit the class, so every command of every group reports bad options the same way.
    """

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"Error: {' '.join(message.split())} (see {self.prog} --help)\n")

    def _get_values(self, action: argparse.Action, arg_strings: list[str]) -> Any:
        # Python 3.11's argparse drops a "--" it takes as the separator even when it is an option's one value
        # (``--workers=--``) and hands the option an empty list instead of a number; refuse it as a usage error.
        given = " ".join(arg_strings)
        values = super()._get_values(action, arg_strings)
        if action.option_strings and action.nargs is None and isinstance(values, list) and not values:
            raise argparse.ArgumentError(action, f"expected one value, got {given!r}")
        return values


def add_command(
    subparsers: Any, name: str, *, help: str, description: str, epilog: str, run: Handler
) -> argparse.ArgumentParser:
    """Add subcommand ``name`` whose handler ``run`` receives the parsed arguments."""
    parser: argparse.ArgumentParser = subparsers.add_parser(
        name, help=help, description=description, epilog=epilog, formatter_class=help_formatter
    )
    parser.set_defaults(func=run)
    return parser


def positive_int(text: str) -> int:
    """An argparse type: a whole number above 0."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"{value} must be positive")
    return value


def positive_float(text: str) -> float:
    """An argparse type: a number above 0."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not math.isfinite(value) or value <= 0:
        raise argparse.ArgumentTypeError(f"{text!r} must be a finite number above 0")
    return value


def unit_interval(text: str) -> float:
    """An argparse type for a share or a similarity: a number above 0 and at most 1."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not 0.0 < value <= 1.0:
        raise argparse.ArgumentTypeError(f"must be above 0 and at most 1, got {text}")
    return value
