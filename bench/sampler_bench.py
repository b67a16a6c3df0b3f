"""Draws per second of ``Sampler.draw`` over the default build's task mix (issue 13), and a digest of what it drew.

The sampler is built by :func:`kochallenge_data.build.plan_build`, exactly as a build builds it (same seed, same
shuffled task order), and each round draws ``--draws`` candidates in that order with a fresh sampler. The digest
covers every candidate's instruction, input, output, key and metadata, so two runs (before and after a change to
the sampler) that print the same digest drew the same candidates.

    .venv/bin/python bench/sampler_bench.py --draws 30000 --rounds 3
"""

from __future__ import annotations

import argparse
import hashlib
import statistics
import time
from typing import Any

import orjson

from kochallenge_data.build import BuildConfig, plan_build
from kochallenge_data.generate import Candidate


def canonical(value: Any) -> Any:
    """``value`` with sets sorted and tuples as lists, so its JSON does not depend on PYTHONHASHSEED."""
    if isinstance(value, frozenset | set):
        return sorted(canonical(v) for v in value)
    if isinstance(value, tuple | list):
        return [canonical(v) for v in value]
    if isinstance(value, dict):
        return {k: canonical(v) for k, v in value.items()}
    return value


def candidate_bytes(candidate: Candidate) -> bytes:
    return orjson.dumps(
        [candidate.task, candidate.instruction, candidate.input, candidate.output, canonical(candidate.key)]
    ) + orjson.dumps(candidate.meta, option=orjson.OPT_SORT_KEYS)


def one_round(draws: int, seed: int) -> tuple[float, str]:
    """Seconds for ``draws`` draws of a freshly planned build, and the digest of the candidates."""
    plan = plan_build(BuildConfig(size=draws, seed=seed))
    sampler = plan.sampler
    started = time.perf_counter()
    candidates = [sampler.draw(task) for task in plan.order]
    seconds = time.perf_counter() - started
    digest = hashlib.sha256()
    for candidate in candidates:
        digest.update(candidate_bytes(candidate))
    return seconds, digest.hexdigest()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--draws", type=int, default=30_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seed", type=int, default=42)
    args = parser.parse_args()
    rates: list[float] = []
    digests: set[str] = set()
    for round_number in range(1, args.rounds + 1):
        seconds, digest = one_round(args.draws, args.seed)
        rates.append(args.draws / seconds)
        digests.add(digest)
        print(f"round {round_number}: {args.draws:,} draws in {seconds:.2f} s = {rates[-1]:,.0f} draws/s")
    print(f"median: {statistics.median(rates):,.0f} draws/s over {args.rounds} rounds (seed {args.seed})")
    print(f"candidates sha256: {' '.join(sorted(digests))}")


if __name__ == "__main__":
    main()
