"""Build time and the variety targets (issue 4) for a build of the shipped pools."""

from __future__ import annotations

import argparse
import time
from collections import Counter
from pathlib import Path

from kochallenge_data.build import BuildConfig, build_dataset, write_build
from kochallenge_data.validate import read_dataset, validate_records


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--size", type=int, default=30_000)
    parser.add_argument("--out", type=Path, default=Path("bench/out/build_bench.json"))
    args = parser.parse_args()
    started = time.perf_counter()
    result = build_dataset(BuildConfig(size=args.size, out=args.out))
    build_seconds = time.perf_counter() - started
    write_build(result, args.out)
    report = validate_records(read_dataset(args.out))

    print("| measure | result | target |\n| --- | --- | --- |")
    print(f"| records | {len(result.records):,} in {build_seconds:.1f} s | |")
    print(f"| capacity per task | {result.stats['capacity']} | |")
    print(f"| rejected and replaced | {result.stats['rejected'] or 'none'} | |")
    print(f"| validate findings on the result | {report.summary or 'none'} | none |")
    for task in ("base_info", "free_text"):
        sources = Counter(m["recommend"] for m in result.meta if m["task"] == task)
        top, count = sources.most_common(1)[0]
        print(f"| {task}: most used recommend sentence | {count / sum(sources.values()):.2%} ({top}) | <= 2% |")
    lines = Counter(c for m in result.meta for c in m.get("challenges", []))
    top, count = lines.most_common(1)[0]
    print(f"| most used challenge, share of all challenge lines | {count / sum(lines.values()):.2%} ({top}) | <= 2% |")
    texts = Counter(
        line
        for r, t in zip(result.records, result.tasks, strict=True)
        if t != "feedback"
        for line in r.output.split("\n")[1:]
    )
    line_count = texts.most_common(1)[0][1]
    print(f"| most used challenge line (title and description) | {line_count / sum(texts.values()):.2%} | <= 0.4% |")
    print(f"| distinct challenge lines used | {len(texts):,} | |")
    for task, figures in result.stats["diversity"].items():
        print(
            f"| {task}: distinct-1 / distinct-2 (Kiwi morphemes) | {figures['distinct_1']} / {figures['distinct_2']} | |"
        )
    feedback = [r.output for r, t in zip(result.records, result.tasks, strict=True) if t == "feedback"]
    print(
        f"| feedback length max / mean | {max(map(len, feedback))} / {sum(map(len, feedback)) / len(feedback):.0f} | <= 100 |"
    )


if __name__ == "__main__":
    main()
