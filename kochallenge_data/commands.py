"""Shared pieces of the command-line groups: one help layout and one way to add a command.

Every command's help ends with examples (``epilog``), and every handler returns the exit code.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import Any

Handler = Callable[[argparse.Namespace], int]


def help_formatter(prog: str) -> argparse.HelpFormatter:
    """Keep the line breaks of descriptions and examples as written."""
    return argparse.RawDescriptionHelpFormatter(prog, max_help_position=32)


def add_command(
    subparsers: Any, name: str, *, help: str, description: str, epilog: str, run: Handler
) -> argparse.ArgumentParser:
    """Add subcommand ``name`` whose handler ``run`` receives the parsed arguments."""
    parser: argparse.ArgumentParser = subparsers.add_parser(
        name, help=help, description=description, epilog=epilog, formatter_class=help_formatter
    )
    parser.set_defaults(func=run)
    return parser
