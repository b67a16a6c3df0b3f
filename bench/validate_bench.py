"""validate throughput on a large build, and the near-duplicate search alone.

Target (issue 3): near-duplicate search over 100k records well under a minute on 2 cores.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from kochallenge_data.build import BuildConfig, build_dataset, write_build
from kochallenge_data.checks.dedup import DuplicateIndex
from kochallenge_data.validate import read_dataset, validate_records


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--records", type=int, default=100_000)
    parser.add_argument("--data", type=Path, default=Path("bench/out/validate_bench.json"))
    args = parser.parse_args()
    if not args.data.exists():
        started = time.perf_counter()
        config = BuildConfig(size=args.records, seed=1, out=args.data, diversity=False)
        write_build(build_dataset(config), args.data)
        print(f"built {args.records} records in {time.perf_counter() - started:.1f} s")
    records = read_dataset(args.data)

    started = time.perf_counter()
    index = DuplicateIndex()
    hits = sum(index.add(f"{r['input']}\n{r['output']}", i) is not None for i, r in enumerate(records))
    near_seconds = time.perf_counter() - started

    started = time.perf_counter()
    report = validate_records(records)
    validate_seconds = time.perf_counter() - started

    print("| measure | result |\n| --- | --- |")
    print(f"| records | {len(records):,} |")
    print(f"| near-duplicate search (exact + MinHash LSH, verified) | {near_seconds:.1f} s ({hits} hits) |")
    print(
        f"| full validate (all checks, Kiwi spacing included) | {validate_seconds:.1f} s, {len(records) / validate_seconds:,.0f} records/s |"
    )
    print(f"| findings | {report.summary or 'none'} |")


if __name__ == "__main__":
    main()
