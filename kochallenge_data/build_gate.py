"""The build's gate: draws candidates until every slot holds a record that passed every check.

Drawing is sequential (one random stream decides everything), and so is the near-duplicate search (a record is
compared with those accepted before it); records go to the sink in the order they are accepted. The per-record
checks between them (structure, spacing, fingerprints) depend on nothing but the record, so they can run in worker
processes while the next batch is drawn. Slots are drawn in first-in first-out order (a rejected slot goes to the
back of the queue), and the draws depend on nothing a check decides, so drawing ahead changes only where batches
are cut, never which draw fills which slot: the bytes are the same for any number of workers.
"""

from __future__ import annotations

import hashlib
from collections import Counter, deque
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np
import orjson

from .check_workers import check_pool, worker_checker
from .checks.dedup import DuplicateIndex
from .checks.diversity import WordReading, morphemes_of_words, read_words_here
from .checks.minhash import FingerprintBatch, fingerprint_batch
from .checks.record import RecordChecker
from .digest_set import DigestSet
from .errors import CapacityError, KochallengeError
from .generate import Candidate, Sampler, pool_to_grow
from .models import Finding, Task
from .progress import Reporter

BATCH = 512
# Consecutive draws that only repeat earlier records before a task counts as exhausted.
MAX_REPEATS = 2000
MIN_ALLOWED_REJECTS = 20
# Batches waiting for their checks, per worker: enough to keep every worker busy while the gate draws.
AHEAD_PER_WORKER = 2

CheckItem = tuple[int, dict[str, str], Task]


class Sink(Protocol):
    def accept(self, candidate: Candidate) -> None: ...


def key_digest(key: object) -> int:
    """A stable 8-byte digest of a candidate key (nested tuples of strings, numbers and booleans): the set of seen
    keys stays small at a million records, and the same on every machine (Python's own str hash is salted per
    process). JSON tells the types apart (true is not 1) and orjson writes it several times faster than ``repr``;
    a set would raise, as its order follows salted hashes."""
    return int.from_bytes(hashlib.blake2b(orjson.dumps(key), digest_size=8).digest(), "little")


@dataclass(frozen=True)
class CheckedBatch:
    """Findings per item, and the fingerprints of the items without findings, in order."""

    findings: list[list[Finding]]
    clean_prints: FingerprintBatch


def check_batch(checker: RecordChecker, items: Sequence[CheckItem]) -> CheckedBatch:
    """Everything the gate judges from a record alone."""
    findings = checker.check_many(items)
    clean = [
        f"{record['input']}\n{record['output']}" for (_, record, _), f in zip(items, findings, strict=True) if not f
    ]
    return CheckedBatch(findings, fingerprint_batch(clean))


class Checks(Protocol):
    """Where batches are checked: ``submit`` returns a function that waits for the result."""

    def submit(self, items: list[CheckItem]) -> Callable[[], CheckedBatch]: ...

    def read_words(self, words: list[str]) -> WordReading:
        """Kiwi's morphemes of each word, for the diversity figures (:data:`.checks.diversity.WordReader`)."""
        ...

    @property
    def ahead(self) -> int: ...


@dataclass
class InlineChecks:
    """Checks in this process, when asked for the result."""

    checker: RecordChecker
    ahead: int = 1

    def submit(self, items: list[CheckItem]) -> Callable[[], CheckedBatch]:
        return lambda: check_batch(self.checker, items)

    def read_words(self, words: list[str]) -> WordReading:
        return read_words_here(words)


def _check_in_worker(items: list[CheckItem]) -> CheckedBatch:
    return check_batch(worker_checker(), items)


def _as_given(checker: RecordChecker) -> RecordChecker:
    return checker


class PoolChecks:
    """Checks in ``workers`` processes, each with a copy of ``checker``."""

    def __init__(self, checker: RecordChecker, workers: int) -> None:
        self.ahead = AHEAD_PER_WORKER * workers
        self._pool = check_pool(workers, _as_given, checker)

    def submit(self, items: list[CheckItem]) -> Callable[[], CheckedBatch]:
        return self._pool.apply_async(_check_in_worker, (items,)).get

    def read_words(self, words: list[str]) -> WordReading:
        """In a worker, so this process never loads Kiwi (the workers have it loaded already)."""
        return self._pool.apply_async(morphemes_of_words, (words,)).get

    def close(self) -> None:
        self._pool.terminate()
        self._pool.join()


class SlotQueue:
    """The slots waiting for a draw: every slot in order, then the rejected ones in the order they were rejected.

    The first pass is a counter, not a queue of a million ints (36 MB)."""

    def __init__(self, slots: int) -> None:
        self._next_fresh = 0
        self._slots = slots
        self._again: deque[int] = deque()

    def __len__(self) -> int:
        return self._slots - self._next_fresh + len(self._again)

    def take(self, most: int) -> list[int]:
        fresh = range(self._next_fresh, min(self._slots, self._next_fresh + most))
        self._next_fresh = fresh.stop
        taken = list(fresh)
        while len(taken) < most and self._again:
            taken.append(self._again.popleft())
        return taken

    def append(self, slot: int) -> None:
        self._again.append(slot)


@dataclass
class _InFlight:
    slots: list[int]
    candidates: list[Candidate]
    result: Callable[[], CheckedBatch]


@dataclass
class Gate:
    """Draws, checks and accepts; rejected slots are drawn again after every other waiting slot."""

    sampler: Sampler
    checks: Checks
    duplicates: DuplicateIndex
    sink: Sink
    max_reject_share: float
    rejected: list[dict[str, Any]] = field(default_factory=list)
    keep_rejected: bool = True
    on_reject: Callable[[dict[str, Any]], None] | None = None  # where the command streams rejections
    rejected_total: int = 0
    reasons: Counter[str] = field(default_factory=Counter)
    seen: DigestSet = field(default_factory=DigestSet)
    distinct: Counter[str] = field(default_factory=Counter)
    blame: Counter[str] = field(default_factory=Counter)
    balance: dict[str, Counter[str]] = field(
        default_factory=lambda: {key: Counter() for key in ("category", "location", "work_type")}
    )
    # Where each slot's record sits in the dataset (records are listed as accepted), to name it in findings.
    positions: np.ndarray = field(default_factory=lambda: np.empty(0, dtype=np.int64))
    accepted_total: int = 0

    def fill(self, order: list[Task], reporter: Reporter) -> None:
        pending = SlotQueue(len(order))
        self.positions = np.full(len(order), -1, dtype=np.int64)
        in_flight: deque[_InFlight] = deque()
        # A few rejects are normal even in tiny builds; beyond the share, the pools need fixing.
        allowed_rejects = int(self.max_reject_share * len(order)) + MIN_ALLOWED_REJECTS
        with reporter.step("sampling and checks", len(order)) as step:
            while pending or in_flight:
                while pending and len(in_flight) < self.checks.ahead:
                    try:
                        in_flight.append(self._draw_batch(order, pending))
                    except KochallengeError:
                        for waiting in self._drain(in_flight):  # an earlier batch's error comes first
                            self._settle(waiting, pending, allowed_rejects)
                        raise
                step.advance(self._settle(in_flight.popleft(), pending, allowed_rejects))

    def _draw_batch(self, order: list[Task], pending: SlotQueue) -> _InFlight:
        slots = pending.take(BATCH)
        candidates = [self._draw_new(order[slot]) for slot in slots]
        items = [(slot, c.model_record(), c.task) for slot, c in zip(slots, candidates, strict=True)]
        return _InFlight(slots, candidates, self.checks.submit(items))

    @staticmethod
    def _drain(in_flight: deque[_InFlight]) -> Iterator[_InFlight]:
        while in_flight:
            yield in_flight.popleft()

    def _settle(self, batch: _InFlight, pending: SlotQueue, allowed_rejects: int) -> int:
        """Judge a checked batch in the order drawn; returns how many of its records were accepted."""
        checked = batch.result()
        clean = [i for i, findings in enumerate(checked.findings) if not findings]
        hits = iter(self.duplicates.add_batch(checked.clean_prints, [batch.slots[i] for i in clean]))
        accepted = 0
        for slot, candidate, findings in zip(batch.slots, batch.candidates, checked.findings, strict=True):
            if not findings:
                findings = self._duplicate_findings(slot, next(hits))
            if findings:
                self._reject(candidate, findings)
                if self.rejected_total > allowed_rejects:
                    raise KochallengeError(self._too_many_rejects_message())
                pending.append(slot)
            else:
                self._accept(slot, candidate)
                accepted += 1
        return accepted

    def _accept(self, slot: int, candidate: Candidate) -> None:
        self.sink.accept(candidate)
        self.positions[slot] = self.accepted_total
        self.accepted_total += 1
        if candidate.task == "base_info":
            for key, counts in self.balance.items():
                counts[candidate.meta[key]] += 1

    def _draw_new(self, task: Task) -> Candidate:
        for _ in range(MAX_REPEATS):
            candidate = self.sampler.draw(task)
            digest = key_digest(candidate.key)
            if digest not in self.seen:
                self.seen.add(digest)
                self.distinct[task] += 1
                return candidate
        raise CapacityError(
            f"task {task}: the pools ran out of new records after {self.distinct[task]} distinct ones "
            f"({MAX_REPEATS} draws in a row repeated earlier records); grow {pool_to_grow(self.sampler.pools, task)}"
        )

    def _reject(self, candidate: Candidate, findings: list[Finding]) -> None:
        reasons = sorted({f.code for f in findings})
        sources = _sources(candidate.meta)
        self.blame.update(f"{source} ({reason})" for source in sources for reason in reasons)
        self.reasons.update(reasons)
        self.rejected_total += 1
        item = {
            "task": candidate.task,
            "reasons": reasons,
            "findings": [f.model_dump(exclude={"index"}, exclude_none=True) for f in findings],
            "record": candidate.model_record(),
            "meta": candidate.meta,
        }
        if self.keep_rejected:
            self.rejected.append(item)
        if self.on_reject is not None:
            self.on_reject(item)

    def _duplicate_findings(self, slot: int, hit: tuple[str, int, float] | None) -> list[Finding]:
        """The index holds slots; the record hit is already accepted, so the message names its place in the dataset."""
        if hit is None:
            return []
        kind, other_slot, similarity = hit
        other = int(self.positions[other_slot])
        message = (
            f"the same as record {other}"
            if kind == "duplicate"
            else f"nearly the same as record {other} (similarity {similarity:.2f})"
        )
        return [Finding(index=slot, field="output", code=kind, message=message)]

    def _too_many_rejects_message(self) -> str:
        worst = ", ".join(f"{item} x{n}" for item, n in self.blame.most_common(5))
        return (
            f"the checks rejected {self.rejected_total} candidates, more than allowed for this size; "
            f"the pool items most often involved: {worst}. Fix those phrases (run lint-pools) and build again"
        )


def _sources(meta: dict[str, Any]) -> list[str]:
    found: list[str] = []
    for key in ("recommend", "message", "instruction"):
        if isinstance(meta.get(key), str):
            found.append(meta[key])
    for key in ("challenges", "phrases"):
        found += [s for s in meta.get(key, []) if isinstance(s, str)]
    return found
