"""Worker processes for the per-record checks, shared by the build's gate and ``validate``.

Each worker is spawned (a fresh interpreter, safe whatever threads the parent runs: tqdm's, Kiwi's), runs Kiwi on
one thread (the processes are the parallelism; Kiwi's own threads would only compete) and keeps one checker for its
whole life, so the checker's caches stay warm from batch to batch.
"""

from __future__ import annotations

import multiprocessing
import multiprocessing.pool
from collections.abc import Callable
from typing import Any, TypeVar

from .checks.spacing import use_kiwi_threads

Setting = TypeVar("Setting")

_checker: Any = None


def check_pool(workers: int, make_checker: Callable[[Setting], object], setting: Setting) -> multiprocessing.pool.Pool:
    """``workers`` processes, each holding ``make_checker(setting)`` (both must pickle: a module-level function or
    class, and plain data)."""
    context = multiprocessing.get_context("spawn")
    return context.Pool(workers, initializer=_start, initargs=(make_checker, setting))


def worker_checker() -> Any:
    """The checker of the worker process this runs in."""
    if _checker is None:
        raise RuntimeError("worker_checker() runs only inside a check_pool worker")
    return _checker


def _start(make_checker: Callable[[Setting], object], setting: Setting) -> None:
    global _checker
    use_kiwi_threads(1)
    _checker = make_checker(setting)
