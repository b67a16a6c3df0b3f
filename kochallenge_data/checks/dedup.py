"""Exact and near-duplicate detection that scales to millions of short Korean records in little memory.

Near duplicates use MinHash over character 3-gram shingles with LSH banding (126 hashes in 18 bands
of 7), and every candidate pair is confirmed with the exact Jaccard similarity, so the threshold
is exact and the banding only decides which pairs are worth comparing. Long bands keep built data
fast: records that share two of three challenge lines (Jaccard about 0.5) rarely become candidates
(13%), while a pair at 0.8 is found with probability 0.985 and at 0.85 with 0.999.

The index is compact, about 300 bytes a stored text plus its shingles, which go to a temporary
file once they pass a memory budget (they are read back only to confirm a candidate):

- exact keys are 8-byte hashes of the normalized text (a false match needs a 64-bit collision);
- band keys are 4-byte hashes of each band (a collision only adds a candidate to check), kept with
  4-byte positions in sorted numpy runs (:class:`SortedRuns`), 144 bytes a text;
- signatures are kept as their low 8 bits, enough to rank candidates: equal hashes stay equal, so the
  estimate can only rise and no candidate the full signature would keep is dropped;
- shingles live in one flat uint64 buffer with offsets (:class:`GramStore`).

:meth:`DuplicateIndex.add_batch` gives the same answers as :meth:`DuplicateIndex.add` one text at a
time, with the runs searched once per batch; ``validate`` computes the fingerprints in its workers.
"""

from __future__ import annotations

import hashlib
import os
import re
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from typing import IO, Any

import numpy as np

from ..text import ZERO_WIDTH, nfc

SHINGLE = 3
BANDS = 18
ROWS = 7
HASHES = BANDS * ROWS
# A stored signature row: HASHES bytes and zeros up to a multiple of 8, so rows can be summed as uint64 words.
ROW_BYTES = -(-HASHES // 8) * 8
DEFAULT_THRESHOLD = 0.8

# Fixed multipliers: the same shingles give the same signature on every machine.
_GENERATOR = np.random.default_rng(20260301)
_MULTIPLIERS = _GENERATOR.integers(1, 2**63, size=HASHES, dtype=np.uint64) | np.uint64(1)
_OFFSETS = _GENERATOR.integers(0, 2**63, size=HASHES, dtype=np.uint64)
# Mixing constants that turn a band's seven values into one key (collisions only add candidates).
_BAND_MIX = np.random.default_rng(20260302).integers(1, 2**63, size=(BANDS, ROWS), dtype=np.uint64) | np.uint64(1)
_BAND_SALT = np.uint64(0x9E3779B97F4A7C15)

# Entries in one sorted run of the index (64 MB of band keys and positions); a few more runs to search beats
# rewriting hundreds of megabytes at once.
MAX_RUN = 1 << 23

# Shingles kept in memory; the rest are read back from a temporary file (the page cache, in practice) only to confirm
# a candidate. 32 MB holds about 20,000 records' shingles and keeps a 1,000,000-record build under 1 GB.
GRAMS_IN_MEMORY = 32 << 20

# Candidates whose MinHash estimate is this far below the threshold are not worth an exact check;
# with 126 hashes the estimate's standard error is at most 0.045, so 0.2 is over four of them.
ESTIMATE_MARGIN = 0.2
# Candidate pairs whose signatures are compared in one numpy call (126 bytes each): a few megabytes at a time.
PAIRS_AT_ONCE = 1 << 15

_ZERO_WIDTH_RUN = re.compile(f"[{ZERO_WIDTH}]+")


def normalized(text: str) -> str:
    """The same text as :func:`..text.normalize_for_compare`, several times faster: ``str.split`` knows
    the same whitespace as the regex ``\\s``, and most text has no zero-width character to remove."""
    cleaned = nfc(text)
    if _ZERO_WIDTH_RUN.search(cleaned):
        cleaned = _ZERO_WIDTH_RUN.sub("", cleaned)
    return " ".join(cleaned.split())


def _grams_of(key: str) -> np.ndarray:
    compact = key.replace(" ", "")
    codes = np.frombuffer(compact.encode("utf-32-le"), dtype=np.uint32).astype(np.uint64)
    if len(codes) < SHINGLE:
        codes = np.concatenate([codes, np.zeros(SHINGLE - len(codes), dtype=np.uint64)])
    grams = (codes[:-2] << np.uint64(42)) ^ (codes[1:-1] << np.uint64(21)) ^ codes[2:]
    return sorted_distinct(grams)


def sorted_distinct(values: np.ndarray) -> np.ndarray:
    """``np.unique(values)``, four times faster on the short arrays here (numpy 2's unique hashes first)."""
    ordered = np.sort(values)
    keep = np.empty(len(ordered), dtype=bool)
    keep[:1] = True
    np.not_equal(ordered[1:], ordered[:-1], out=keep[1:])
    result: np.ndarray = ordered[keep]
    return result


def grams_many(keys: Sequence[str]) -> list[np.ndarray]:
    """:func:`_grams_of` for many normalized texts: one conversion to code points for all of them."""
    compact = [key.replace(" ", "") for key in keys]
    codes = np.frombuffer("".join(compact).encode("utf-32-le"), dtype=np.uint32).astype(np.uint64)
    grams = (codes[:-2] << np.uint64(42)) ^ (codes[1:-1] << np.uint64(21)) ^ codes[2:]
    found = []
    start = 0
    for text in compact:
        if len(text) < SHINGLE:
            found.append(_grams_of(text))  # padded with zeros, as a short text alone is
        else:
            found.append(sorted_distinct(grams[start : start + len(text) - 2]))
        start += len(text)
    return found


def shingles(text: str) -> np.ndarray:
    """Distinct character 3-gram ids of the normalized text (spaces dropped: spacing noise is not content)."""
    return _grams_of(normalized(text))


def minhash(grams: np.ndarray) -> np.ndarray:
    """126 multiply-shift hashes (wrapping uint64 arithmetic, then the high 32 bits), each minimized over the grams."""
    hashed = np.multiply.outer(_MULTIPLIERS, grams)
    hashed += _OFFSETS[:, None]
    # The shift keeps order, so the minimum can be taken before it.
    result: np.ndarray = (hashed.min(axis=1) >> np.uint64(32)).astype(np.uint32)
    return result


def band_keys_many(signatures: np.ndarray) -> np.ndarray:
    """One uint32 per band, (texts, BANDS); equal bands give equal keys, and the band's number is mixed in.

    A collision between different bands only adds a candidate, which the estimate and the exact
    Jaccard then judge, so 32 bits are enough and halve the largest part of the index."""
    bands = signatures.astype(np.uint64).reshape(-1, BANDS, ROWS)
    mixed = (bands * _BAND_MIX).sum(axis=2) + np.arange(BANDS, dtype=np.uint64) * _BAND_SALT  # wraps, as intended
    keyed: np.ndarray = (mixed >> np.uint64(32)).astype(np.uint32)
    return keyed


def band_keys(signature: np.ndarray) -> np.ndarray:
    keys: np.ndarray = band_keys_many(signature[None, :])[0]
    return keys


def exact_key(key: str) -> int:
    return int.from_bytes(hashlib.blake2b(key.encode(), digest_size=8).digest(), "little")


def jaccard(a: frozenset[int], b: frozenset[int]) -> float:
    inter = len(a & b)
    union = len(a) + len(b) - inter
    return inter / union if union else 1.0


def jaccard_many(grams: np.ndarray, others: Sequence[np.ndarray]) -> np.ndarray:
    """:func:`jaccard` of ``grams`` with each of ``others``, for sorted arrays of distinct values (none empty: a
    text's shingles never are), in a few numpy calls for all the pairs: the same integers, so the same floats."""
    lengths = np.array([len(other) for other in others], dtype=np.int64)
    flat = np.concatenate(others)
    at = np.searchsorted(grams, flat)
    at[at == len(grams)] = 0
    shared = np.add.reduceat((grams[at] == flat).astype(np.int64), np.cumsum(lengths) - lengths)
    similarities: np.ndarray = shared / (len(grams) + lengths - shared)
    return similarities


@dataclass(frozen=True)
class Fingerprint:
    """What the index needs of one text; computing it is the costly part, so workers can do it."""

    key: int
    grams: np.ndarray
    signature: np.ndarray


def fingerprint(text: str) -> Fingerprint:
    key = normalized(text)
    grams = _grams_of(key)
    return Fingerprint(exact_key(key), grams, minhash(grams))


@dataclass(frozen=True)
class FingerprintBatch:
    """Fingerprints of many texts in a few flat arrays: cheap to send between processes."""

    keys: np.ndarray  # uint64, one per text
    signatures: np.ndarray  # uint32, (texts, HASHES)
    bands: np.ndarray  # uint32, (texts, BANDS)
    grams: np.ndarray  # uint64: every text's grams, one text after another
    ends: np.ndarray  # int64: text i's grams end at ends[i] and start at ends[i - 1] (0 for the first)

    def __len__(self) -> int:
        return len(self.keys)

    def item(self, index: int) -> Fingerprint:
        start = int(self.ends[index - 1]) if index else 0
        return Fingerprint(int(self.keys[index]), self.grams[start : int(self.ends[index])], self.signatures[index])


def joined_key(first: str, second: str) -> str:
    """``normalized(first + "\\n" + second)`` from the two parts already normalized (a line break never
    joins with its neighbours under NFC, and it is whitespace)."""
    return f"{first} {second}" if first and second else first or second


def fingerprint_batch(texts: Sequence[str]) -> FingerprintBatch:
    return fingerprint_keys([normalized(text) for text in texts])


def fingerprint_keys(keys: Sequence[str]) -> FingerprintBatch:
    """Fingerprints of texts already normalized."""
    grams = grams_many(keys)
    signatures = minhash_many(grams)
    return FingerprintBatch(
        keys=np.array([exact_key(key) for key in keys], dtype=np.uint64),
        signatures=signatures,
        bands=band_keys_many(signatures),
        grams=np.concatenate(grams) if grams else np.empty(0, dtype=np.uint64),
        ends=np.cumsum([len(g) for g in grams], dtype=np.int64),
    )


def minhash_many(grams: Sequence[np.ndarray], chunk: int = 16) -> np.ndarray:
    """:func:`minhash` of each gram array, (texts, HASHES); a few texts at a time share each numpy call."""
    signatures = np.empty((len(grams), HASHES), dtype=np.uint32)
    for start in range(0, len(grams), chunk):
        part = grams[start : start + chunk]
        hashed = np.multiply.outer(_MULTIPLIERS, np.concatenate(part))
        hashed += _OFFSETS[:, None]
        starts = np.cumsum([0] + [len(g) for g in part[:-1]])
        lowest = np.minimum.reduceat(hashed, starts, axis=1)
        signatures[start : start + len(part)] = (lowest >> np.uint64(32)).T
    return signatures


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
        """For each position in ``keys`` that has values in the sorted runs, those values."""
        found: dict[int, list[int]] = {}
        if not self._runs or not len(keys):
            return found
        order = np.argsort(keys)  # searching in key order touches each run's memory once, front to back
        needles = keys[order]
        for run_keys, run_values in self._runs:
            low = np.searchsorted(run_keys, needles, side="left")
            present = np.flatnonzero(run_keys[np.minimum(low, len(run_keys) - 1)] == needles)
            if not len(present):
                continue
            high = np.searchsorted(run_keys, needles[present], side="right")
            for at, start, end in zip(order[present].tolist(), low[present].tolist(), high.tolist(), strict=True):
                found.setdefault(at, []).extend(run_values[start:end].tolist())
        return found

    def pairs_in_runs(self, keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Every (position in ``keys``, value) with the value stored in the sorted runs under that key, as two
        flat int64 arrays, unordered: :meth:`in_runs` without a Python step per match."""
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
            # Each match's place in the run: its range's start, plus how far into the range it is.
            starts = np.repeat(low - (np.cumsum(counts) - counts), counts)
            needles_at.append(np.repeat(order[present], counts))
            found.append(run_values[starts + np.arange(len(starts))].astype(np.int64))
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


def earlier_equal(rows: np.ndarray) -> dict[int, list[int]]:
    """For each row, the earlier rows that share at least one value with it (repeats possible)."""
    width = rows.shape[1]
    flat = rows.ravel()
    order = np.argsort(flat, kind="stable")  # stable: owners of equal values stay in ascending order
    values = flat[order]
    owners = order // width
    starts = np.flatnonzero(np.concatenate([[True], values[1:] != values[:-1]]))
    sizes = np.diff(np.append(starts, len(values)))
    found: dict[int, list[int]] = {}
    for start, size in zip(starts[sizes > 1].tolist(), sizes[sizes > 1].tolist(), strict=True):
        group = owners[start : start + size].tolist()
        for at, owner in enumerate(group):
            before = [other for other in group[:at] if other != owner]
            if before:
                found.setdefault(owner, []).extend(before)
    return found


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
        item = self._count
        start = self._start(item)
        end = start + len(grams)
        if self._spilled_from is None and end > self._memory_limit:
            self._spilled_from, start, end = item, 0, len(grams)
            # Lives as long as the index; the file has no name and vanishes when closed.
            self._file = tempfile.TemporaryFile(prefix="kochallenge-grams-")  # noqa: SIM115
        if self._spilled_from is None:
            if end > len(self._memory):
                self._memory = _grown(self._memory, end)
            self._memory[start:end] = grams
        else:
            chunk = np.ascontiguousarray(grams, dtype=np.uint64).tobytes()
            self._unwritten.append(chunk)
            self._unwritten_bytes += len(chunk)
            if self._unwritten_bytes > 8 << 20:
                self._write_out()
        if item == len(self._ends):
            self._ends = _grown(self._ends, item + 1)
        self._ends[item] = end
        self._count += 1

    def extend(self, grams: np.ndarray, lengths: np.ndarray) -> None:
        """:meth:`append` for consecutive items whose grams lie one after another in ``grams``."""
        if not len(lengths):
            return
        first = self._count
        start = self._start(first)
        spills_now = self._spilled_from is None and start + len(grams) > self._memory_limit
        if spills_now:  # rare: once per index, where the file takes over
            for piece in np.split(grams, np.cumsum(lengths)[:-1]):
                self.append(piece)
            return
        if self._spilled_from is None:
            if start + len(grams) > len(self._memory):
                self._memory = _grown(self._memory, start + len(grams))
            self._memory[start : start + len(grams)] = grams
        else:
            self._unwritten.append(np.ascontiguousarray(grams, dtype=np.uint64).tobytes())
            self._unwritten_bytes += 8 * len(grams)
            if self._unwritten_bytes > 8 << 20:
                self._write_out()
        if first + len(lengths) > len(self._ends):
            self._ends = _grown(self._ends, first + len(lengths))
        self._ends[first : first + len(lengths)] = start + np.cumsum(lengths)
        self._count += len(lengths)

    def get(self, item: int) -> np.ndarray:
        start, end = self._start(item), int(self._ends[item])
        if self._spilled_from is None or item < self._spilled_from:
            return self._memory[start:end]
        self._write_out()
        assert self._file is not None
        data = os.pread(self._file.fileno(), (end - start) * 8, start * 8)
        return np.frombuffer(data, dtype=np.uint64)

    def _start(self, item: int) -> int:
        return 0 if item == 0 or item == self._spilled_from else int(self._ends[item - 1])

    def _write_out(self) -> None:
        if self._file is not None and self._unwritten:
            self._file.seek(0, os.SEEK_END)
            self._file.write(b"".join(self._unwritten))
            self._file.flush()
            self._unwritten.clear()
            self._unwritten_bytes = 0


def _low_bits(signature: np.ndarray) -> np.ndarray:
    """The stored form of a signature (or of each row of several): its hashes' low bytes, padded with zeros to
    ROW_BYTES. Equal hashes stay equal, so estimates from it never drop a candidate."""
    low = np.zeros((*signature.shape[:-1], ROW_BYTES), dtype=np.uint8)
    low[..., :HASHES] = signature & np.uint32(0xFF)
    return low


_BYTE_SUM = np.uint64(0x0101010101010101)


def agreeing_hashes(rows: np.ndarray, other: np.ndarray) -> np.ndarray:
    """How many of the HASHES bytes of each stored-form row equal those of ``other`` (a row, or one per row).

    ``np.count_nonzero(rows == other, axis=1)`` without its slow sum over booleans: the equality bytes (0 or 1)
    of a row are added as uint64 words (at most ROW_BYTES / 8 in each byte, so no carry), and a word's bytes are
    added up by one multiplication, whose top byte is their sum (at most ROW_BYTES < 256). The padding, zero on
    both sides, always agrees and is taken off."""
    equal = np.equal(rows, other)
    words = equal.view(np.uint8).view(np.uint64).sum(axis=1, dtype=np.uint64)
    counts: np.ndarray = ((words * _BYTE_SUM) >> np.uint64(56)).astype(np.int64) - (ROW_BYTES - HASHES)
    return counts


def _grown(array: np.ndarray, needed: int) -> np.ndarray:
    bigger = np.empty(max(needed, 2 * len(array)), dtype=array.dtype)
    bigger[: len(array)] = array
    return bigger


Hit = tuple[str, int, float]


class DuplicateIndex:
    """Add texts one by one; each add says whether it repeats, or nearly repeats, an earlier text."""

    def __init__(self, threshold: float = DEFAULT_THRESHOLD, memory_bytes: int = GRAMS_IN_MEMORY) -> None:
        self.threshold = threshold
        self._exact = SortedRuns(np.uint64, np.int32)
        self._bands = SortedRuns(np.uint32, np.int32)
        self._grams = GramStore(memory_bytes)
        self._signatures = np.empty((1024, ROW_BYTES), dtype=np.uint8)
        self._ids = np.empty(1024, dtype=np.int64)

    def __len__(self) -> int:
        return len(self._grams)

    def find(self, text: str) -> Hit | None:
        """("duplicate" | "near_duplicate", earlier id, similarity) or None; does not add."""
        print_ = fingerprint(text)
        earlier = self._exact_id(print_.key)
        if earlier is not None:
            return "duplicate", earlier, 1.0
        candidates = self._bands.values(band_keys(print_.signature))
        return self._confirm(print_.grams, _low_bits(print_.signature), candidates)

    def add(self, text: str, item_id: int) -> Hit | None:
        """Check ``text`` against everything added so far, then add it if it is new."""
        print_ = fingerprint(text)
        earlier = self._exact_id(print_.key)
        if earlier is not None:
            return "duplicate", earlier, 1.0
        bands = band_keys(print_.signature)
        hit = self._confirm(print_.grams, _low_bits(print_.signature), self._bands.values(bands))
        if hit is None:
            self._store(print_, bands.tolist(), item_id)
            self._settle()
        return hit

    def insert(self, text: str, item_id: int) -> None:
        """Make ``text`` searchable even when it nearly repeats an earlier one.

        ``add`` keeps only the first of two near duplicates; a reference set (a training split that
        validation is compared with) needs every text, since similarity is not transitive.
        """
        print_ = fingerprint(text)
        if self._exact_id(print_.key) is None:  # an exact copy is already searchable
            self._store(print_, band_keys(print_.signature).tolist(), item_id)
            self._settle()

    def add_batch(self, batch: FingerprintBatch, ids: Sequence[int]) -> list[Hit | None]:
        """:meth:`add` for each fingerprint in order, with the index searched once for the whole batch and
        the texts that are new stored together at its end.

        What the index held before the batch is judged for every text at once, in numpy: the candidates
        sharing a band, and which of them are likely by their signatures. Only the likely ones (about one a
        text, where the candidates grow with the index) and the batch's own earlier texts are looked at one
        text at a time, in order."""
        self._exact.flush()
        self._bands.flush()
        exact_in_runs = self._exact.in_runs(batch.keys)
        likely_stored = self._likely_stored(batch)
        same_key_before = earlier_equal(batch.keys[:, None])
        same_band_before = earlier_equal(batch.bands)
        pending = _Pending(len(self), batch, _low_bits(batch.signatures), ids)
        position_of = [-1] * len(batch)  # where each text of the batch is to be stored, if it is
        hits: list[Hit | None] = []
        for i in range(len(batch)):
            earlier = exact_in_runs.get(i) or [
                position_of[k] for k in same_key_before.get(i, ()) if position_of[k] >= 0
            ]
            if earlier:
                hits.append(("duplicate", self._id_at(min(earlier), pending), 1.0))
                continue
            in_batch = [position_of[k] for k in same_band_before.get(i, ()) if position_of[k] >= 0]
            likely = likely_stored.get(i, []) + (self._likely(pending.low[i], in_batch, pending) if in_batch else [])
            hit = self._most_similar(batch.item(i).grams, likely, pending)
            if hit is None:
                position_of[i] = pending.keep(i)
            hits.append(hit)
        self._store_pending(pending)
        return hits

    def _likely_stored(self, batch: FingerprintBatch) -> dict[int, list[int]]:
        """For each text of the batch, the stored texts sharing a band with it whose signatures agree enough
        to be worth an exact check, in ascending order."""
        needles, positions = self._bands.pairs_in_runs(batch.bands.ravel())
        texts = needles // BANDS
        # A pair sharing several bands is judged more than once here: cheaper than making the pairs distinct first.
        low = _low_bits(batch.signatures)
        agreeing = np.empty(len(positions), dtype=np.int64)
        for start in range(0, len(positions), PAIRS_AT_ONCE):  # bounded: a large index has many candidates
            part = slice(start, start + PAIRS_AT_ONCE)
            agreeing[part] = agreeing_hashes(self._signatures[positions[part]], low[texts[part]])
        likely = agreeing >= _likely_count(self.threshold)
        if not likely.any():
            return {}
        # Distinct (text, stored position) pairs, sorted by text and then position.
        pairs = np.unique(texts[likely] << 32 | positions[likely])
        texts, positions = pairs >> 32, pairs & 0xFFFFFFFF
        bounds = np.flatnonzero(np.diff(texts)) + 1
        return {
            int(group_texts[0]): group.tolist()
            for group_texts, group in zip(np.split(texts, bounds), np.split(positions, bounds), strict=True)
            if len(group)
        }

    def _exact_id(self, key: int) -> int | None:
        positions = self._exact.values(np.array([key], dtype=np.uint64))
        return int(self._ids[min(positions)]) if positions else None

    def _store(self, print_: Fingerprint, bands: list[int], item_id: int) -> None:
        position = len(self)
        self._reserve(position + 1)
        self._signatures[position] = _low_bits(print_.signature)
        self._ids[position] = item_id
        self._grams.append(print_.grams)
        self._exact.add([print_.key], position)
        self._bands.add(bands, position)

    def _store_pending(self, pending: _Pending) -> None:
        kept = np.array(pending.kept, dtype=np.int64)
        if not len(kept):
            return
        start = len(self)
        self._reserve(start + len(kept))
        positions = np.arange(start, start + len(kept))
        self._signatures[positions] = pending.low[kept]
        self._ids[positions] = [pending.ids[k] for k in pending.kept]
        ends = pending.batch.ends
        starts = np.concatenate([[0], ends[:-1]])[kept]
        lengths = ends[kept] - starts
        # The kept texts' grams, one after another: each one's start, plus how far into it.
        within = np.arange(int(lengths.sum())) - np.repeat(np.cumsum(lengths) - lengths, lengths)
        self._grams.extend(pending.batch.grams[np.repeat(starts, lengths) + within], lengths)
        self._exact.add_run(pending.batch.keys[kept], positions)
        self._bands.add_run(pending.batch.bands[kept].ravel(), np.repeat(positions, BANDS))

    def _reserve(self, size: int) -> None:
        if size > len(self._ids):
            count = len(self)
            self._ids = _grown(self._ids, size)
            bigger = np.empty((len(self._ids), ROW_BYTES), dtype=np.uint8)
            bigger[:count] = self._signatures[:count]
            self._signatures = bigger

    def _settle(self) -> None:
        self._exact.settle()
        self._bands.settle()

    def _id_at(self, position: int, pending: _Pending | None = None) -> int:
        if pending is not None and position >= pending.base:
            return int(pending.ids[pending.kept[position - pending.base]])
        return int(self._ids[position])

    def _confirm(
        self, grams: np.ndarray, low: np.ndarray, candidates: list[int], pending: _Pending | None = None
    ) -> Hit | None:
        """The most similar candidate at or over the threshold (the earliest on a tie), by exact Jaccard."""
        return self._most_similar(grams, self._likely(low, candidates, pending), pending)

    def _likely(self, low: np.ndarray, candidates: list[int], pending: _Pending | None) -> list[int]:
        """The distinct candidates, in ascending order, whose signatures agree enough with ``low`` to be worth
        an exact check."""
        if not candidates:
            return []
        positions = np.array(sorted(set(candidates)), dtype=np.int64)
        base = pending.base if pending is not None else len(self)
        stored = positions[positions < base]
        rows = self._signatures[stored]
        if pending is not None and len(stored) < len(positions):
            kept = np.array(pending.kept, dtype=np.int64)[positions[len(stored) :] - base]
            rows = np.concatenate([rows, pending.low[kept]])
        agreeing = agreeing_hashes(rows, low)
        likely: list[int] = positions[agreeing >= _likely_count(self.threshold)].tolist()
        return likely

    def _most_similar(self, grams: np.ndarray, likely: list[int], pending: _Pending | None) -> Hit | None:
        """Of ``likely`` (ascending positions), the most similar at or over the threshold, the earliest on a tie."""
        if not likely:
            return None
        base = pending.base if pending is not None else len(self)
        others = [
            self._grams.get(position) if position < base else self._pending_grams(position, pending)
            for position in likely
        ]
        similarities = jaccard_many(grams, others)
        best = int(np.argmax(similarities))  # the earliest of the most similar
        similarity = float(similarities[best])
        if similarity < self.threshold:
            return None
        return ("near_duplicate", self._id_at(likely[best], pending), similarity)

    @staticmethod
    def _pending_grams(position: int, pending: _Pending | None) -> np.ndarray:
        assert pending is not None
        return pending.batch.item(pending.kept[position - pending.base]).grams


@dataclass
class _Pending:
    """The texts of a batch that are new, stored when the batch ends; until then they are found here,
    at the positions they will have (``base`` on)."""

    base: int
    batch: FingerprintBatch
    low: np.ndarray  # every text's stored signature form, (texts, ROW_BYTES)
    ids: Sequence[int]
    kept: list[int] = field(default_factory=list)  # batch indices, in the order they will be stored

    def keep(self, index: int) -> int:
        self.kept.append(index)
        return self.base + len(self.kept) - 1


@lru_cache(maxsize=8)
def _likely_count(threshold: float) -> int:
    """The fewest agreeing hashes whose share reaches ``threshold - ESTIMATE_MARGIN`` (the same float
    comparison as on the mean: c / HASHES is computed the same way)."""
    return next((c for c in range(HASHES + 1) if c / HASHES >= threshold - ESTIMATE_MARGIN), HASHES + 1)
