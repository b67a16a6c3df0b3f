"""Build at scale (issue 13): a default build with every check against Kiwi's ``space()`` run naively over the same
outputs, one and several worker processes, and peak memory; with ``--million``, a 1,000,000-record build in one
process against linear time from the one-process build.

Every figure comes from this one run: each build is a fresh ``python -m kochallenge_data build`` process (Kiwi's
start-up included), timed by wall clock, its peak RSS read from the kernel when it ends. The naive pass is one
batched ``Kiwi.space()`` call over every output, with Kiwi's default threads, in a process of its own.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import subprocess
import sys
import time
from pathlib import Path

from machine import load_now, machine_row

NAIVE = """
import sys, time, orjson
from kiwipiepy import Kiwi
outputs = [r["output"] for r in orjson.loads(open(sys.argv[1], "rb").read())]
kiwi = Kiwi()
started = time.perf_counter()
spaced = list(kiwi.space(outputs))
print(len(spaced), time.perf_counter() - started)
"""


def timed(command: list[str]) -> tuple[float, int, float]:
    """Wall seconds, peak RSS (MiB) and CPU seconds (user and system, its worker processes included) of a child
    process that must succeed."""
    started = time.perf_counter()
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(process.pid, 0)
    seconds = time.perf_counter() - started
    if os.waitstatus_to_exitcode(status) != 0:
        sys.exit(f"failed: {' '.join(command)}\n{process.stderr.read().decode() if process.stderr else ''}")
    # The build reaps its workers before it exits, so their CPU time is in the child's usage.
    return seconds, usage.ru_maxrss // 1024, usage.ru_utime + usage.ru_stime


def build(size: int, workers: int, out: Path) -> tuple[float, int, str, float]:
    command = [sys.executable, "-m", "kochallenge_data", "build", "--size", str(size), "--out", str(out)]
    seconds, peak, cpu = timed([*command, "--workers", str(workers)])
    return seconds, peak, hashlib.sha256(out.read_bytes()).hexdigest(), cpu


def naive_spacing(dataset: Path) -> float:
    result = subprocess.run([sys.executable, "-c", NAIVE, str(dataset)], capture_output=True, text=True, check=True)
    return float(result.stdout.split()[1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--size", type=int, default=100_000)
    parser.add_argument("--workers", type=int, default=2, help="the worker count compared with one process")
    parser.add_argument("--million", action="store_true", help="also build 1,000,000 records (about 20 minutes)")
    parser.add_argument("--out", type=Path, default=Path("bench/out/scale"))
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)

    load_before = load_now()
    one = build(args.size, 1, args.out / "one.json")
    many = build(args.size, args.workers, args.out / "many.json")
    naive = naive_spacing(args.out / "one.json")
    print(f"| measure ({args.size:,} records, {os.cpu_count()} CPUs) | result | target |")
    print("| --- | --- | --- |")
    print(f"| build, 1 process, every check | {one[0]:.1f} s, peak RSS {one[1]} MiB, CPU {one[3]:.1f} s | <= 30 s |")
    print(
        f"| build, --workers {args.workers} | {many[0]:.1f} s, peak RSS {many[1]} MiB, "
        f"CPU {many[3]:.1f} s (all processes) | <= 30 s |"
    )
    print(
        f"| one-process CPU time over {os.cpu_count()} CPUs (the least wall time any split could give) | "
        f"{one[3] / (os.cpu_count() or 1):.1f} s | |"
    )
    print(f"| same bytes for 1 and {args.workers} workers | {one[2] == many[2]} | True |")
    print(f"| Kiwi space() naively over the same outputs | {naive:.1f} s | |")
    best = min(one[0], many[0])
    print(f"| naive spacing / fastest build | {naive / best:.1f}x | >= 10x |")
    if args.million:
        # One process, so its peak RSS is the whole build's memory (each worker would hold a Kiwi of its own).
        million = build(1_000_000, 1, args.out / "million.json")
        linear = one[0] * 1_000_000 / args.size
        print(f"| build 1,000,000, 1 process | {million[0]:.0f} s, peak RSS {million[1]} MiB | <= 1 GB |")
        print(f"| 1,000,000 / linear from {args.size:,} (1 process) | {million[0] / linear:.2f}x | <= 1.2x |")
    print(f"| machine | {machine_row(load_before)} | |")


if __name__ == "__main__":
    main()
