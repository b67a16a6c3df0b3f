"""Helpers for the split / export / report / audit tests: one shared build, and a CLI runner.

The build is cached for the whole session (every test module imports the same fixture), so the
four test files pay for Kiwi and the generator once.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

import orjson
import pytest

from kochallenge_data.build import BuildConfig, build_dataset, write_build
from kochallenge_data.errors import KochallengeError
from kochallenge_data.stack_cli import register

from .conftest import ROOT

SAMPLE_SIZE = 300
SAMPLE_SEED = 7
_BUILDS: dict[tuple[int, int], Path] = {}


def build_once(factory: pytest.TempPathFactory, size: int = SAMPLE_SIZE, seed: int = SAMPLE_SEED) -> Path:
    """Build the shipped pools once per (size, seed) and session; returns the dataset path."""
    key = (size, seed)
    if key not in _BUILDS:
        out = factory.mktemp(f"build{size}_{seed}") / "data.json"
        config = BuildConfig(size=size, seed=seed, out=out, diversity=False)
        write_build(build_dataset(config), out)
        _BUILDS[key] = out
    return _BUILDS[key]


@pytest.fixture(scope="session")
def sample_dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_once(tmp_path_factory)


def load_records(path: Path) -> list[dict[str, str]]:
    data: list[dict[str, str]] = orjson.loads(path.read_bytes())
    return data


def stack_parser() -> argparse.ArgumentParser:
    """The project CLI when it already carries the stack commands, else a parser with only them."""
    from kochallenge_data.cli import build_parser

    parser = build_parser()
    action = next(a for a in parser._actions if a.dest == "command")
    if "export" in action.choices:  # type: ignore[operator]
        return parser
    parser = argparse.ArgumentParser(prog="python -m kochallenge_data")
    register(parser.add_subparsers(dest="command", required=True, metavar="COMMAND"))
    return parser


def main(argv: Sequence[str]) -> int:
    """What ``python -m kochallenge_data`` does with these commands: ``Error: ...`` and an exit code."""
    args = stack_parser().parse_args(list(argv))
    try:
        code: int = args.func(args)
    except KochallengeError as exc:
        print(f"Error: {exc}", file=sys.stderr)
        return exc.exit_code
    return code


def run_in_process(*argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = main(argv)
        except SystemExit as exc:  # argparse usage errors
            code = int(exc.code or 0)
    return code, out.getvalue(), err.getvalue()


def run_subprocess(*argv: str, block: Sequence[str] = ()) -> subprocess.CompletedProcess[str]:
    """Run the commands in a fresh interpreter; ``block`` makes those imports fail, as if not installed."""
    script = (
        "import sys\n"
        f"for name in {list(block)!r}:\n"
        "    sys.modules[name] = None\n"
        "from tests.stack_helpers import main\n"
        "raise SystemExit(main(sys.argv[1:]))\n"
    )
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    return subprocess.run(
        [sys.executable, "-c", script, *argv], cwd=ROOT, env=env, capture_output=True, text=True, check=False
    )
