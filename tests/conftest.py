"""Shared fixtures. Hypothesis runs a quick profile by default and a thorough one in CI."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings

settings.register_profile("dev", max_examples=40, deadline=None)
settings.register_profile(
    "ci", max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow], print_blob=True
)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci" if os.environ.get("CI") else "dev"))

ROOT = Path(__file__).resolve().parent.parent
FIXTURE_POOLS = ROOT / "tests" / "fixtures" / "pools"
GOLDEN = ROOT / "tests" / "golden"


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--update-golden", action="store_true", help="rewrite golden files from the current output")


@pytest.fixture
def update_golden(request: pytest.FixtureRequest) -> bool:
    return bool(request.config.getoption("--update-golden"))


@pytest.fixture
def fixture_pools() -> Path:
    return FIXTURE_POOLS


def assert_golden(path: Path, actual: str, update: bool) -> None:
    """Compare with a golden file; ``pytest --update-golden`` rewrites it after a deliberate change."""
    if update or not path.exists():
        path.write_text(actual, encoding="utf-8")
        if not update:
            pytest.fail(f"golden file {path.name} was missing and has been written; check it and run again")
    assert actual == path.read_text(encoding="utf-8"), f"{path.name} changed; if intended, run pytest --update-golden"
