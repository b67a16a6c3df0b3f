"""What machine a bench ran on, for its results: timings from different hosts are not comparable (two hosts of
the same 2-core kind gave the same naive Kiwi pass in 101.8 s and in 256 to 286 s)."""

from __future__ import annotations

import os
from pathlib import Path


def processor() -> str:
    """The CPU's model name as the kernel reports it, or "unknown"."""
    try:
        cpuinfo = Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace")
    except OSError:
        return "unknown"
    for line in cpuinfo.splitlines():
        key, _, value = line.partition(":")
        if key.strip() == "model name" and value.strip():
            return value.strip()
    return "unknown"


def load_now() -> str:
    """The 1, 5 and 15 minute load averages: other work on the machine slows every figure."""
    return "/".join(f"{x:.1f}" for x in os.getloadavg())


def machine_row(load_before: str) -> str:
    return f"{os.cpu_count()} cores, {processor()}; load average {load_before} before the runs, {load_now()} after"
