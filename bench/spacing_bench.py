"""Spacing check accuracy on correct Korean sentences and their glued variants.

Targets (issue 3): false alarms <= 2% of correct sentences; >= 95% of fully glued sentences flagged;
>= 60% of single missing spaces after a particle or an ending flagged.
"""

from __future__ import annotations

import argparse
import random
import time
from pathlib import Path

from kochallenge_data.checks.spacing import SpacingChecker, get_kiwi

CORPUS = Path(__file__).parent / "data" / "correct_sentences.txt"
AFTER_PARTICLE_OR_ENDING = ("J", "ETM", "EC", "EF", "ETN")


def read_corpus(path: Path) -> list[str]:
    lines = path.read_text(encoding="utf-8").splitlines()
    return [line for line in lines if line.strip() and not line.startswith("#")]


def single_gaps(sentence: str) -> list[str]:
    """Variants with exactly one space removed, where the word before ends in a particle or ending."""
    tokens = get_kiwi().tokenize(sentence)
    variants = []
    for index, char in enumerate(sentence):
        if char != " ":
            continue
        before = [t for t in tokens if t.start + t.len == index]
        after = [t for t in tokens if t.start == index + 1]
        if not before or not after or not before[-1].tag.startswith(AFTER_PARTICLE_OR_ENDING):
            continue
        if before[-1].tag == "EC" and after[0].tag.startswith("VX"):
            continue  # auxiliary verbs may be written either way
        if not ("\uac00" <= sentence[index + 1] <= "\ud7a3"):
            continue
        variants.append(sentence[:index] + sentence[index + 1 :])
    return variants


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--corpus", type=Path, default=CORPUS)
    parser.add_argument("--show", type=int, default=10, help="print this many false alarms and misses")
    args = parser.parse_args()
    sentences = read_corpus(args.corpus)
    checker = SpacingChecker()
    started = time.perf_counter()
    correct = checker.check_many(sentences)
    false_alarms = [r for r in correct if not r.ok]
    glued_texts = [s.replace(" ", "") for s in sentences if " " in s]
    glued = checker.check_many(glued_texts)
    gaps = [v for s in sentences for v in single_gaps(s)]
    gap_results = checker.check_many(gaps)
    seconds = time.perf_counter() - started
    checked = len(sentences) + len(glued_texts) + len(gaps)

    def share(part: int, whole: int) -> str:
        return f"{part}/{whole} = {100 * part / whole:.1f}%"

    print(f"corpus: {args.corpus} ({len(sentences)} sentences)")
    print("| measure | result | target |\n| --- | --- | --- |")
    print(f"| false alarms on correct sentences | {share(len(false_alarms), len(sentences))} | <= 2% |")
    print(f"| fully glued sentences flagged | {share(sum(not r.ok for r in glued), len(glued))} | >= 95% |")
    print(
        f"| single missing space after a particle or ending flagged | {share(sum(not r.ok for r in gap_results), len(gap_results))} | >= 60% |"
    )
    print(f"| throughput (Kiwi batch, 1 process) | {checked / seconds:.0f} texts/s | |")
    random.seed(0)
    for result in false_alarms[: args.show]:
        print(f"  false alarm: {result.text!r} -> {result.suggestion!r}")
    misses = [r.text for r in gap_results if r.ok]
    for text in random.sample(misses, min(args.show, len(misses))):
        print(f"  missed: {text!r}")


if __name__ == "__main__":
    main()
