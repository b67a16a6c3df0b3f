"""validate at scale: a foreign 100,000-record file, a 1 GB JSONL, and our own 100,000-record build.

Targets (issue 13): >= 5,000 records/s on a foreign 100,000-record file with spacing on, on the 2-core
machine; a 1 GB JSONL validated in flat memory (peak RSS: VmHWM of the validating process and of its
largest worker); the same bytes from any number of workers. Every validation runs as a fresh process,
start-up, Kiwi's model and the workers' start included, as a user would run it. Data goes to bench/out/
(git-ignored) and is made on the first run: the foreign files by bench/foreign_data.py, the build by
``build``.

    .venv/bin/python bench/validate_bench.py
    .venv/bin/python bench/validate_bench.py --big-gb 0.1             # a smaller "big" file
    .venv/bin/python bench/validate_bench.py --reference /tmp/before  # also time another checkout (1 process)
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import os
import re
import resource
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from machine import load_now, machine_row

OUT = Path(__file__).resolve().parent / "out"
HERE = Path(__file__).resolve()
SENTENCE_END = re.compile(r"(?<=[.!?])\s+|\n")
HANGUL = re.compile("[가-힣]")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--records", type=int, default=100_000, help="records in the foreign file and the build")
    parser.add_argument("--big-gb", type=float, default=1.0, help="size of the big JSONL in GB (0 skips it)")
    parser.add_argument("--big-workers", type=int, default=2)
    parser.add_argument("--reference", type=Path, help="another checkout whose validate is timed on the foreign file")
    parser.add_argument("--measure", nargs=3, metavar=("FILE", "WORKERS", "REPORT"), help=argparse.SUPPRESS)
    parser.add_argument("--code", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.measure:
        measure(Path(args.measure[0]), int(args.measure[1]), Path(args.measure[2]), args.code)
        return
    run_bench(args)


def run_bench(args: argparse.Namespace) -> None:
    foreign = OUT / f"foreign_{args.records // 1000}k.json"
    built = OUT / ("validate_bench.json" if args.records == 100_000 else f"validate_bench_{args.records // 1000}k.json")
    big = OUT / f"foreign_{args.big_gb:g}gb.jsonl"
    ensure_foreign(foreign, records=args.records)
    ensure_built(built, args.records)
    load_before = load_now()  # other work on the machine slows every figure below
    rows: list[tuple[str, str]] = []
    records, share = distinct_sentences(foreign)
    rows.append(("foreign file", f"{records:,} records, {mb(foreign)}; {share:.1%} of output sentences occur once"))

    runs = {workers: timed(foreign, workers) for workers in (1, 2)}
    for workers, run in runs.items():
        rows.append((f"validate foreign, spacing on, {workers} worker{'s' * (workers > 1)}", describe(run)))
    same = runs[1]["sha256"] == runs[2]["sha256"]
    rows.append(("reports from 1 and 2 workers", "byte-identical" if same else "DIFFERENT"))
    spacing = runs[1]["spacing"]
    texts = spacing.get("cleared", 0) + spacing.get("fully_checked", 0)
    rows.append(
        (
            "spacing pre-check (1 worker)",
            f"{spacing.get('cleared', 0) / max(texts, 1):.1%} of {texts:,} distinct texts cleared; Kiwi read "
            f"{spacing.get('words_read', 0):,} words, {spacing.get('windows_read', 0):,} windows and "
            f"{spacing.get('fully_checked', 0):,} whole texts",
        )
    )
    best = max(run["records"] / run["seconds"] for run in runs.values())
    if args.reference:
        reference = timed(foreign, 1, code=args.reference)
        rows.append((f"validate foreign with {args.reference}, 1 process", describe(reference)))
        rows.append(("report the same as the reference's", compare_reports(reference["report"], runs[1]["report"])))

    if args.big_gb > 0:
        ensure_foreign(big, size_bytes=int(args.big_gb * 1e9))
        run = timed(big, args.big_workers)
        rows.append((f"validate {mb(big)} JSONL, {args.big_workers} workers", describe(run, memory=True)))

    index_seconds, hits = near_duplicate_search(built)
    rows.append(
        (
            "built file: near-duplicate search alone (exact + MinHash LSH, verified)",
            f"{index_seconds:.1f} s ({hits} hits)",
        )
    )
    for workers in (1, 2):
        rows.append((f"built file: validate, {workers} worker{'s' * (workers > 1)}", describe(timed(built, workers))))

    rows.append(("machine", machine_row(load_before)))
    print("| measure | result |\n| --- | --- |")
    for name, value in rows:
        print(f"| {name} | {value} |")
    print(
        f"\ntarget >= 5,000 records/s on the foreign file with spacing on: {'met' if best >= 5000 else 'NOT met'} ({best:,.0f})"
    )


def describe(run: dict[str, Any], memory: bool = False) -> str:
    text = f"{run['seconds']:.1f} s, {run['records'] / run['seconds']:,.0f} records/s, {run['findings']:,} findings"
    if memory or run.get("workers_rss_mb"):
        text += f"; peak RSS {run['rss_mb']:,.0f} MB"
        if run.get("workers_rss_mb"):
            text += f" (largest worker {run['workers_rss_mb']:,.0f} MB)"
    return text


def timed(path: Path, workers: int, code: Path | None = None) -> dict[str, Any]:
    """Validate ``path`` in a fresh process; its wall time, counts and memory."""
    report = OUT / f"report_{path.stem}_{workers}{'_ref' if code else ''}.json"
    command = [sys.executable, str(HERE), "--measure", str(path), str(workers), str(report)]
    if code is not None:
        command += ["--code", str(code)]
    started = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    seconds = time.perf_counter() - started
    if done.returncode not in (0, 1):
        raise SystemExit(f"validate failed on {path}:\n{done.stderr[-3000:]}")
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    result["seconds"] = seconds
    result["report"] = str(report)
    result["sha256"] = hashlib.sha256(report.read_bytes()).hexdigest()
    return result


def measure(path: Path, workers: int, report: Path, code: Path | None) -> None:
    """The child: the same work as ``validate FILE --json [--workers N] > REPORT``, then its own peak memory."""
    if code is not None:
        sys.path.insert(0, str(code.resolve()))
    from kochallenge_data import validate

    stats: dict[str, Any] = {}
    with report.open("w", encoding="utf-8") as out, contextlib.redirect_stdout(out):
        if hasattr(validate, "validate_file"):
            writer = validate.ReportWriter(as_json=True)
            result = validate.validate_file(path, validate.ValidateOptions(), writer, workers=workers)
            writer.finish(path, result)
            stats = {"records": result.records, "findings": result.findings, "spacing": dict(result.spacing)}
        else:  # an older checkout: its own command
            from kochallenge_data.cli import main as cli

            cli(["validate", str(path), "--json"])
    if not stats:
        data = json.loads(report.read_text(encoding="utf-8"))
        stats = {"records": data["records"], "findings": len(data["findings"]), "spacing": {}}
    status = Path("/proc/self/status").read_text()
    peak_kb = int(re.search(r"VmHWM:\s+(\d+)", status).group(1))  # type: ignore[union-attr]
    workers_kb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    print(json.dumps({**stats, "rss_mb": peak_kb / 1024, "workers_rss_mb": workers_kb / 1024}))


def compare_reports(reference: str, ours: str) -> str:
    old, new = (json.loads(Path(p).read_text(encoding="utf-8")) for p in (reference, ours))
    if old == new:
        return "yes, byte for byte" if Path(reference).read_bytes() == Path(ours).read_bytes() else "yes"
    old_set = {json.dumps(f, sort_keys=True) for f in old["findings"]}
    new_set = {json.dumps(f, sort_keys=True) for f in new["findings"]}
    gone, added = old_set - new_set, new_set - old_set
    codes = sorted({json.loads(f)["code"] for f in gone | added})
    return f"no: {len(gone)} findings only in the reference, {len(added)} only here (codes: {', '.join(codes)})"


def distinct_sentences(path: Path) -> tuple[int, float]:
    from kochallenge_data.validate import read_dataset

    records = read_dataset(path)
    counts: dict[str, int] = {}
    for record in records:
        for sentence in SENTENCE_END.split(record["output"]):
            if HANGUL.search(sentence):  # not the emoji between sentences
                counts[sentence] = counts.get(sentence, 0) + 1
    once = sum(1 for n in counts.values() if n == 1)
    return len(records), once / max(sum(counts.values()), 1)


def near_duplicate_search(path: Path) -> tuple[float, int]:
    from kochallenge_data.checks.dedup import DuplicateIndex
    from kochallenge_data.validate import read_dataset

    records = read_dataset(path)
    started = time.perf_counter()
    index = DuplicateIndex()
    hits = sum(index.add(f"{r['input']}\n{r['output']}", i) is not None for i, r in enumerate(records))
    return time.perf_counter() - started, hits


def ensure_foreign(path: Path, records: int | None = None, size_bytes: int | None = None) -> None:
    if path.exists():
        return
    sys.path.insert(0, str(HERE.parent))
    from foreign_data import write_foreign

    started = time.perf_counter()
    count, _ = write_foreign(path, records=records, size_bytes=size_bytes)
    print(f"wrote {count:,} foreign records to {path} in {time.perf_counter() - started:.0f} s", file=sys.stderr)


def ensure_built(path: Path, records: int) -> None:
    if path.exists():
        return
    from kochallenge_data.build import BuildConfig, build_dataset, write_build

    started = time.perf_counter()
    config = BuildConfig(size=records, seed=1, out=path, diversity=False)
    write_build(build_dataset(config), path)
    print(f"built {records:,} records in {time.perf_counter() - started:.0f} s", file=sys.stderr)


def mb(path: Path) -> str:
    return f"{os.path.getsize(path) / 1e6:,.0f} MB"


if __name__ == "__main__":
    main()
