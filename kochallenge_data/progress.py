"""Progress for long steps: a tqdm bar with rate and ETA on a terminal, a plain line every few seconds elsewhere.

Library functions take a :class:`Reporter` (default :data:`SILENT`) and open one :meth:`Reporter.step`
per long step (sampling, checks, statistics, writing, validating...); commands pass
:func:`stderr_reporter`. A step that ends within ``quiet_s`` prints nothing when stderr is not a
terminal, so short runs and CI logs stay clean while a 20-second silence cannot happen.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, Protocol, TextIO

PLAIN_EVERY_S = 10.0
QUIET_S = 2.0


class Step(Protocol):
    def advance(self, count: int = 1) -> None: ...

    def __enter__(self) -> Step: ...

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None: ...


class Reporter(Protocol):
    def step(self, label: str, total: int | None, unit: str = "records") -> Step: ...


class _SilentStep:
    def advance(self, count: int = 1) -> None:
        return None

    def __enter__(self) -> _SilentStep:
        return self

    def __exit__(self, *exc: object) -> None:
        return None


class SilentReporter:
    """For library use and tests: nothing is printed."""

    def step(self, label: str, total: int | None, unit: str = "records") -> Step:
        return _SilentStep()


SILENT: Reporter = SilentReporter()


def _rate(done: int, seconds: float, unit: str) -> str:
    return f"{done / seconds:,.0f} {unit}/s" if seconds > 0 else ""


def describe(label: str, done: int, total: int | None, seconds: float, unit: str) -> str:
    """``validate: 30,000/100,000 records (30%), 4,200 records/s, about 17 s left``"""
    rate = done / seconds if seconds > 0 else 0.0
    if total:
        left = f", about {(total - done) / rate:,.0f} s left" if rate > 0 and done < total else ""
        head = f"{label}: {done:,}/{total:,} {unit} ({100 * done / total:.0f}%)"
    else:
        head, left = f"{label}: {done:,} {unit}", ""
    return f"{head}, {_rate(done, seconds, unit)}{left}" if rate else head


@dataclass
class PlainStep:
    """A line every ``every_s`` seconds and one at the end, for logs and pipes."""

    label: str
    total: int | None
    unit: str
    stream: TextIO
    every_s: float = PLAIN_EVERY_S
    quiet_s: float = QUIET_S
    clock: Callable[[], float] = time.monotonic
    done: int = 0
    started: float = field(init=False)
    last_line: float = field(init=False)

    def __post_init__(self) -> None:
        self.started = self.last_line = self.clock()

    def advance(self, count: int = 1) -> None:
        self.done += count
        now = self.clock()
        if now - self.last_line >= self.every_s:
            self.last_line = now
            self._line(now)

    def _line(self, now: float, suffix: str = "") -> None:
        self.stream.write(describe(self.label, self.done, self.total, now - self.started, self.unit) + suffix + "\n")
        self.stream.flush()

    def __enter__(self) -> PlainStep:
        return self

    def __exit__(self, kind: type[BaseException] | None, *exc: object) -> None:
        now = self.clock()
        if kind is None and now - self.started >= self.quiet_s:
            self._line(now, f", done in {now - self.started:.1f} s")


class BarStep:
    """tqdm on a terminal: rate and ETA, redrawn in place."""

    def __init__(self, label: str, total: int | None, unit: str, stream: TextIO) -> None:
        from tqdm import tqdm

        self._bar: Any = tqdm(total=total, desc=label, unit=f" {unit}", unit_scale=True, file=stream, leave=True)

    def advance(self, count: int = 1) -> None:
        self._bar.update(count)

    def __enter__(self) -> BarStep:
        return self

    def __exit__(self, *exc: object) -> None:
        self._bar.close()


@dataclass
class StderrReporter:
    """What commands use: bars on a terminal, plain periodic lines otherwise."""

    stream: TextIO = field(default_factory=lambda: sys.stderr)
    every_s: float = PLAIN_EVERY_S

    def step(self, label: str, total: int | None, unit: str = "records") -> Step:
        if self.stream.isatty():
            return BarStep(label, total, unit, self.stream)
        return PlainStep(label, total, unit, self.stream, every_s=self.every_s)


def stderr_reporter() -> Reporter:
    return StderrReporter()
