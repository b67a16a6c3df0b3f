"""How often the near-duplicate fingerprint makes a pair a candidate, by the pair's true Jaccard similarity, and
how long fingerprints take.

Pairs come from two sources: records of a fresh in-memory build of the shipped pools, and records of
``bench/foreign_data.py`` (written apart from the pools). Each record is paired with copies of itself with a few
words replaced by words of other records (similarities from about 0.3 to 1) and with other records at random
(mostly low). A pair is a candidate when the two signatures agree on a whole band; the last column is what 126
independent hashes in 18 bands of 7 would give at the same similarities, ``1 - (1 - J^7)^18``. The estimate's
error is the share of agreeing stored bytes (what the index ranks candidates by) minus the true similarity.

    .venv/bin/python bench/minhash_bench.py [--records 6000] [--timing 100000]
"""

from __future__ import annotations

import argparse
import itertools
import random
import sys
import time
from pathlib import Path

import numpy as np

from kochallenge_data.build import BuildConfig, build_dataset
from kochallenge_data.checks.minhash import (
    BANDS,
    ROWS,
    band_keys_many,
    distinct_grams,
    fingerprint_batch,
    normalized,
    signatures_of,
)

sys.path.insert(0, str(Path(__file__).parent))
from foreign_data import iter_records

EDGES = (0.0, 0.3, 0.4, 0.5, 0.6, 0.7, 0.75, 0.8, 0.85, 0.9, 0.95, 1.01)
# How much of a text's words a copy has replaced, at most (a random share up to this).
REPLACED = (0.04, 0.1, 0.16, 0.24, 0.32, 0.4, 0.6)
BATCH = 512


def built_texts(count: int) -> list[str]:
    result = build_dataset(BuildConfig(size=count, diversity=False))
    return [f"{record.input}\n{record.output}" for record in result.records]


def foreign_texts(count: int) -> list[str]:
    texts = []
    for record, _ in iter_records(2026):
        if isinstance(record.get("input"), str) and isinstance(record.get("output"), str):
            texts.append(f"{record['input']}\n{record['output']}")
        if len(texts) == count:
            break
    return texts


def pairs_of(texts: list[str], rng: random.Random) -> list[tuple[str, str]]:
    spare_words = [word for text in texts[:2000] for word in text.split()]
    pairs = []
    for text in texts:
        words = text.split()
        for most in REPLACED:
            copy = list(words)
            for _ in range(max(1, round(len(words) * most * rng.random()))):
                copy[rng.randrange(len(copy))] = rng.choice(spare_words)
            pairs.append((text, " ".join(copy)))
    for _ in range(len(texts) * 3):
        first, second = rng.sample(texts, 2)
        pairs.append((first, second))
    return pairs


def signatures(keys: list[str]) -> tuple[np.ndarray, list[np.ndarray]]:
    rows, grams = [], []
    for start in range(0, len(keys), BATCH):
        flat, ends = distinct_grams(keys[start : start + BATCH])
        rows.append(signatures_of(flat, ends))
        grams += np.split(flat, ends[:-1])
    return np.concatenate(rows), grams


def curve(name: str, pairs: list[tuple[str, str]]) -> None:
    first, first_grams = signatures([normalized(a) for a, _ in pairs])
    second, second_grams = signatures([normalized(b) for _, b in pairs])
    similarity = np.array(
        [len(np.intersect1d(a, b)) / len(np.union1d(a, b)) for a, b in zip(first_grams, second_grams, strict=True)]
    )
    candidate = (band_keys_many(first) == band_keys_many(second)).any(axis=1)
    estimate = ((first & 0xFF) == (second & 0xFF)).mean(axis=1)
    print(f"\n{name}: {len(pairs):,} pairs\n")
    print("| Jaccard | pairs | candidates | 126 independent hashes | estimate error, mean / sd |")
    print("| --- | --- | --- | --- | --- |")
    for low, high in itertools.pairwise(EDGES):
        inside = (similarity >= low) & (similarity < high)
        if not inside.any():
            continue
        expected = np.mean(1 - (1 - similarity[inside] ** ROWS) ** BANDS)
        error = estimate[inside] - similarity[inside]
        print(
            f"| {low:.2f} to {min(high, 1.0):.2f} | {inside.sum():,} | {candidate[inside].mean():.4f} "
            f"| {expected:.4f} | {error.mean():+.3f} / {error.std():.3f} |"
        )
    close = similarity >= 0.8
    print(f"\npairs at 0.8 or more that are not candidates: {(~candidate[close]).sum()} of {close.sum():,}")


def timing(texts: list[str], rounds: int = 3) -> None:
    best = float("inf")
    for _ in range(rounds):
        started = time.perf_counter()
        for start in range(0, len(texts), BATCH):
            fingerprint_batch(texts[start : start + BATCH])
        best = min(best, time.perf_counter() - started)
    print(f"\nfingerprints of {len(texts):,} built records, batches of {BATCH}: {best:.2f} s (best of {rounds})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--records", type=int, default=6000, help="records per source that pairs are made from")
    parser.add_argument("--timing", type=int, default=100_000, help="built records to fingerprint for the timing")
    args = parser.parse_args()
    rng = random.Random(20261202)
    built = built_texts(max(args.records, args.timing))
    curve("built records", pairs_of(rng.sample(built, args.records), rng))
    curve("foreign records (bench/foreign_data.py)", pairs_of(foreign_texts(args.records), rng))
    heads = [text.split("\n")[1] for text in rng.sample(built, args.records) if text.count("\n") >= 1]
    curve("one line of each built output (short texts)", pairs_of(heads, rng))
    timing(built[: args.timing])


if __name__ == "__main__":
    main()
