"""Compact storage for the near-duplicate index: an append-only multimap in sorted numpy runs, and every stored
text's shingles in one flat buffer that spills to a temporary file past a memory budget."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Sequence
from typing import IO, Any

import numpy as np

# Entries in one sorted run of the index (64 MB of band keys and positions); a few more runs to search beats
# rewriting hundreds of megabytes at once.
MAX_RUN = 1 << 23

# Shingles kept in memory; the rest are read back from a temporary file (the page cache, in practice) only to confirm
# a candidate. 32 MB holds about 20,000 records' shingles and keeps a 1,000,000-record build under 1 GB.
GRAMS_IN_MEMORY = 32 << 20


class SortedRuns:
    """An append-only multimap from integer keys to integer values, a few bytes an entry.

    New pairs wait in a small dict; once there are ``flush_at`` of them they become a sorted run, and the
    last two runs merge while the newer one is at least half the older (a binary counter), so a lookup
    does one binary search in each of at most log2(n / flush_at) + 1 runs.
    """

    def __init__(
        self, key_type: type[np.unsignedinteger[Any]] = np.uint64, value_type: type[np.signedinteger[Any]] = np.int64
    ) -> None:
        self.flush_at = 1 << 15
        self.max_run = MAX_RUN
        self.key_type, self.value_type = key_type, value_type
        self._pending: dict[int, list[int]] = {}
        self._pending_count = 0
        self._runs: list[tuple[np.ndarray, np.ndarray]] = []

    def __len__(self) -> int:
        return self._pending_count + sum(len(keys) for keys, _ in self._runs)

    @property
    def runs(self) -> int:
        return len(self._runs)

    def add(self, keys: Sequence[int], value: int) -> None:
        """Store ``value`` under each key; call :meth:`settle` when a batch of adds is done."""
        for key in keys:
            self._pending.setdefault(key, []).append(value)
        self._pending_count += len(keys)

    def pending(self, key: int) -> list[int]:
        return self._pending.get(key, [])

    def in_runs(self, keys: np.ndarray) -> dict[int, list[int]]:
        """For each position in ``keys`` that has values in the sorted runs, those values: older runs first, and
        within a run in the order they were stored."""
        at, values = self.pairs_in_runs(keys)
        order = np.argsort(at, kind="stable")  # stable: the pairs come run by run, each run's in stored order
        found: dict[int, list[int]] = {}
        for position, value in zip(at[order].tolist(), values[order].tolist(), strict=True):
            found.setdefault(position, []).append(value)
        return found

    def pairs_in_runs(self, keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Every (position in ``keys``, value) with the value stored in the sorted runs under that key, as two
        flat int64 arrays: run by run, oldest first, and within a run by key, each key's values in stored order."""
        if not self._runs or not len(keys):
            return np.empty(0, dtype=np.int64), np.empty(0, dtype=np.int64)
        order = np.argsort(keys)  # in key order, each search walks a run's memory front to back
        needles = keys[order]
        needles_at: list[np.ndarray] = []
        found: list[np.ndarray] = []
        for run_keys, run_values in self._runs:
            low = np.searchsorted(run_keys, needles, side="left")
            present = np.flatnonzero(run_keys[np.minimum(low, len(run_keys) - 1)] == needles)
            if not len(present):
                continue
            low = low[present]
            counts = np.searchsorted(run_keys, needles[present], side="right") - low
            needles_at.append(np.repeat(order[present], counts))
            found.append(run_values[concatenated_ranges(low, counts)].astype(np.int64))
        if not found:
            return np.empty(0, dtype=np.int64), np.empty(0, dtype=np.int64)
        return np.concatenate(needles_at).astype(np.int64), np.concatenate(found)

    def values(self, keys: np.ndarray) -> list[int]:
        """Every value stored under any of ``keys`` (unordered, with repeats)."""
        found = [value for values in self.in_runs(keys).values() for value in values]
        for key in keys.tolist():
            found += self._pending.get(key, ())
        return found

    def settle(self) -> None:
        """Turn the pending pairs into a run once there are enough of them."""
        if self._pending_count >= self.flush_at:
            self.flush()

    def flush(self) -> None:
        if not self._pending_count:
            return
        keys = np.fromiter(
            (k for k, vs in self._pending.items() for _ in vs), dtype=self.key_type, count=self._pending_count
        )
        values = np.fromiter(
            (v for vs in self._pending.values() for v in vs), dtype=self.value_type, count=self._pending_count
        )
        self._pending, self._pending_count = {}, 0
        self.add_run(keys, values)

    def add_run(self, keys: np.ndarray, values: np.ndarray) -> None:
        """Store many pairs at once (the pending ones must have been flushed first, to keep runs in order)."""
        if not len(keys):
            return
        order = np.argsort(keys, kind="stable")
        self._runs.append((keys[order].astype(self.key_type), values[order].astype(self.value_type)))
        while len(self._runs) > 1 and self._worth_merging(len(self._runs[-2][0]), len(self._runs[-1][0])):
            newer, older = self._runs.pop(), self._runs.pop()
            self._runs.append(_merged(older, newer))

    def _worth_merging(self, older: int, newer: int) -> bool:
        # Runs stop growing at MAX_RUN entries: a merge briefly needs twice the memory of what it merges.
        return 2 * newer >= older and older + newer <= self.max_run


def _merged(
    older: tuple[np.ndarray, np.ndarray], newer: tuple[np.ndarray, np.ndarray]
) -> tuple[np.ndarray, np.ndarray]:
    """Two sorted runs as one, the older's pairs first among equal keys, without sorting again (or an index
    array as long as both)."""
    total = len(older[0]) + len(newer[0])
    at = np.searchsorted(older[0], newer[0], side="right") + np.arange(len(newer[0]))
    from_newer = np.zeros(total, dtype=bool)
    from_newer[at] = True
    merged = []
    for old_part, new_part in zip(older, newer, strict=True):
        out = np.empty(total, dtype=old_part.dtype)
        out[at] = new_part
        out[~from_newer] = old_part
        merged.append(out)
    return merged[0], merged[1]


class GramStore:
    """Every stored text's shingles in one flat uint64 buffer with offsets.

    The first ``memory_bytes`` stay in memory; later items go to an unnamed temporary file and are read
    back with ``pread`` (from the page cache, in practice) only to confirm a candidate.
    """

    def __init__(self, memory_bytes: int = GRAMS_IN_MEMORY) -> None:
        self._memory = np.empty(1024, dtype=np.uint64)
        self._memory_limit = max(1024, memory_bytes // 8)
        # _ends[i]: where item i ends in its storage; it starts where item i - 1 ends, or at 0 when it
        # is the first item of its storage.
        self._ends = np.zeros(1024, dtype=np.int64)
        self._count = 0
        self._spilled_from: int | None = None  # the first item kept in the file
        self._file: IO[bytes] | None = None
        self._unwritten: list[bytes] = []
        self._unwritten_bytes = 0

    def __len__(self) -> int:
        return self._count

    def append(self, grams: np.ndarray) -> None:
        self.extend(grams, np.array([len(grams)], dtype=np.int64))

    def extend(self, grams: np.ndarray, lengths: np.ndarray) -> None:
        """Store consecutive items whose grams lie one after another in ``grams``, item ``i`` of ``lengths[i]``."""
        if not len(lengths):
            return
        first = self._count
        start = self._start(first)
        ends = start + np.cumsum(lengths)
        if self._spilled_from is None and ends[-1] > self._memory_limit:
            # Once per index: the items that still fit stay in memory, the file takes the first that does not.
            fitting = int(np.searchsorted(ends, self._memory_limit, side="right"))
            split = int(ends[fitting - 1]) - start if fitting else 0
            self.extend(grams[:split], lengths[:fitting])
            self._spilled_from = self._count
            # Lives as long as the index; the file has no name and vanishes when closed.
            self._file = tempfile.TemporaryFile(prefix="kochallenge-grams-")  # noqa: SIM115
            self.extend(grams[split:], lengths[fitting:])
            return
        if self._spilled_from is None:
            if ends[-1] > len(self._memory):
                self._memory = grown(self._memory, int(ends[-1]))
            self._memory[start : int(ends[-1])] = grams
        else:
            self._unwritten.append(np.ascontiguousarray(grams, dtype=np.uint64).tobytes())
            self._unwritten_bytes += 8 * len(grams)
            if self._unwritten_bytes > 8 << 20:
                self._write_out()
        if first + len(lengths) > len(self._ends):
            self._ends = grown(self._ends, first + len(lengths))
        self._ends[first : first + len(lengths)] = ends
        self._count += len(lengths)

    def get(self, item: int) -> np.ndarray:
        start, end = self._start(item), int(self._ends[item])
        if self._spilled_from is None or item < self._spilled_from:
            return self._memory[start:end]
        self._write_out()
        assert self._file is not None
        data = os.pread(self._file.fileno(), (end - start) * 8, start * 8)
        return np.frombuffer(data, dtype=np.uint64)

    def gather(self, items: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The grams of many items, one after another, and each one's length: :meth:`get` for each, with each
        distinct item read once and the file's items read into one buffer. (Not through a mapping: the kernel maps
        whole blocks around every page touched, and the resident set of a million-record build doubled.)"""
        items = np.asarray(items, dtype=np.int64)
        distinct, which = np.unique(items, return_inverse=True)
        starts = self._starts(distinct)
        lengths = self._ends[distinct] - starts
        in_memory = distinct < (self._count if self._spilled_from is None else self._spilled_from)
        pieces = [self._memory[concatenated_ranges(starts[in_memory], lengths[in_memory])]]
        if not in_memory.all():
            self._write_out()
            assert self._file is not None
            descriptor = self._file.fileno()
            read = [
                os.pread(descriptor, 8 * length, 8 * start)
                for start, length in zip(starts[~in_memory].tolist(), lengths[~in_memory].tolist(), strict=True)
            ]
            pieces.append(np.frombuffer(b"".join(read), dtype=np.uint64))
        # distinct is sorted, so the items in memory come first, as in the pieces.
        grams_of_distinct = np.concatenate(pieces)
        offsets = np.cumsum(lengths) - lengths
        return grams_of_distinct[concatenated_ranges(offsets[which], lengths[which])], lengths[which]

    def _starts(self, items: np.ndarray) -> np.ndarray:
        """:meth:`_start` of each item."""
        first_of_storage = (items == 0) | (items == (-1 if self._spilled_from is None else self._spilled_from))
        starts: np.ndarray = np.where(first_of_storage, 0, self._ends[np.maximum(items - 1, 0)])
        return starts

    def _start(self, item: int) -> int:
        return 0 if item == 0 or item == self._spilled_from else int(self._ends[item - 1])

    def _write_out(self) -> None:
        if self._file is not None and self._unwritten:
            self._file.seek(0, os.SEEK_END)
            self._file.write(b"".join(self._unwritten))
            self._file.flush()
            self._unwritten.clear()
            self._unwritten_bytes = 0


def concatenated_ranges(starts: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """The indices start, start + 1, ... of each range, one range after another: each index is its range's start
    plus how far into the range it is."""
    return np.repeat(starts - (np.cumsum(lengths) - lengths), lengths) + np.arange(int(lengths.sum()))


def grown(array: np.ndarray, needed: int) -> np.ndarray:
    bigger = np.empty(max(needed, 2 * len(array)), dtype=array.dtype)
    bigger[: len(array)] = array
    return bigger
