"""Spacing check accuracy on correct Korean sentences and their glued variants.

Two corpora: ``data/correct_sentences.txt`` (written beside the rules; targets of issue 3: false alarms <= 2%,
>= 95% of fully glued sentences flagged, >= 60% of single missing spaces after a particle or ending flagged) and,
with ``--heldout``, the three registers of ``data/heldout/`` written apart from the rules (issue 14: <= 1% false
alarms in each register, >= 95% glued and >= 70% single missing spaces still caught). The checker is the one
``validate`` runs, with the shipped allowlist. ``--corpus data/dev_glued_chat.txt`` runs the first table on the
chat-style development set the glued-run rule was tuned on (a tuning aid, not a measure).
"""

from __future__ import annotations

import argparse
import random
import time
from pathlib import Path

from kochallenge_data.checks.spacing import SpacingChecker, get_kiwi
from kochallenge_data.pools import default_pools_dir
from kochallenge_data.spacing_allowlist import load_allowlist

CORPUS = Path(__file__).parent / "data" / "correct_sentences.txt"
HELDOUT = Path(__file__).parent / "data" / "heldout"
REGISTERS = ("news", "legal", "chat")
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


def share(part: int, whole: int) -> str:
    return f"{part}/{whole} = {100 * part / whole:.1f}%"


def heldout(show: int) -> None:
    """One row per register: false alarms as written, and what is caught once glued."""
    checker = SpacingChecker(load_allowlist(default_pools_dir()))
    print("| register | false alarms on correct sentences | fully glued flagged | single missing space flagged |")
    print("| --- | --- | --- | --- |")
    shown: list[str] = []
    for register in REGISTERS:
        sentences = read_corpus(HELDOUT / f"{register}.txt")
        alarms = [r for r in checker.check_many(sentences) if not r.ok]
        glued = checker.check_many([s.replace(" ", "") for s in sentences if " " in s])
        gaps = checker.check_many([v for s in sentences for v in single_gaps(s)])
        print(
            f"| {register} | {share(len(alarms), len(sentences))} | {share(sum(not r.ok for r in glued), len(glued))} "
            f"| {share(sum(not r.ok for r in gaps), len(gaps))} |"
        )
        shown += [f"  {register} false alarm: {r.text!r} -> {r.suggestion!r}" for r in alarms[:show]]
    print("\n".join(shown))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--corpus", type=Path, default=CORPUS)
    parser.add_argument("--heldout", action="store_true", help="measure on the held-out registers instead")
    parser.add_argument("--show", type=int, default=10, help="print this many false alarms and misses")
    args = parser.parse_args()
    if args.heldout:
        heldout(args.show)
        return
    sentences = read_corpus(args.corpus)
    checker = SpacingChecker(load_allowlist(default_pools_dir()))
    started = time.perf_counter()
    correct = checker.check_many(sentences)
    false_alarms = [r for r in correct if not r.ok]
    glued_texts = [s.replace(" ", "") for s in sentences if " " in s]
    glued = checker.check_many(glued_texts)
    gaps = [v for s in sentences for v in single_gaps(s)]
    gap_results = checker.check_many(gaps)
    seconds = time.perf_counter() - started
    checked = len(sentences) + len(glued_texts) + len(gaps)

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
