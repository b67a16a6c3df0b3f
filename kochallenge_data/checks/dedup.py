"""Exact and near-duplicate detection that scales to millions of short Korean records in little memory.

Near duplicates are found by MinHash with LSH banding (:mod:`.minhash`), and every candidate pair is confirmed with
the exact Jaccard similarity, so the threshold is exact and the banding only decides which pairs are worth
comparing.

The index is compact, about 300 bytes a stored text plus its shingles, which go to a temporary
file once they pass a memory budget (they are read back only to confirm a candidate; :mod:`.index_store`):

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

from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import lru_cache

import numpy as np

from .index_store import GRAMS_IN_MEMORY, GramStore, SortedRuns, concatenated_ranges, grown
from .minhash import (
    BANDS,
    HASHES,
    Fingerprint,
    FingerprintBatch,
    band_keys,
    fingerprint,
    jaccard_flat,
    jaccard_many,
)

DEFAULT_THRESHOLD = 0.8
# A stored signature row: HASHES bytes and zeros up to a multiple of 8, so rows can be summed as uint64 words.
ROW_BYTES = -(-HASHES // 8) * 8

# Candidates whose MinHash estimate is this far below the threshold are not worth an exact check; the estimate's
# standard deviation is at most 0.05 on built, foreign and one-line texts (bench/minhash_bench.py), so 0.2 is four.
ESTIMATE_MARGIN = 0.2
# Candidate pairs whose signatures are compared in one numpy call (126 bytes each): a few megabytes at a time.
PAIRS_AT_ONCE = 1 << 15


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


Hit = tuple[str, int, float]
Best = tuple[int, float]  # (position, similarity)


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
        pending = _Pending(len(self), batch, _low_bits(batch.signatures), ids)
        # What the batch's texts nearly repeat in the index as it stood does not depend on the batch's own order.
        best_stored = self._best_stored(batch, *self._likely_stored(batch, pending.low))
        same_key_before = earlier_equal(batch.keys[:, None])
        same_band_before = earlier_equal(batch.bands)
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
            likely = self._likely(pending.low[i], in_batch, pending) if in_batch else []
            hit = self._most_similar(batch.item(i).grams, likely, pending, best_stored.get(i))
            if hit is None:
                position_of[i] = pending.keep(i)
            hits.append(hit)
        self._store_pending(pending)
        return hits

    def _likely_stored(self, batch: FingerprintBatch, low: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The stored texts sharing a band with a text of the batch whose signatures (``low``, their stored form)
        agree enough to be worth an exact check, as distinct (text, stored position) pairs sorted by text and
        then by position: two int64 arrays."""
        needles, positions = self._bands.pairs_in_runs(batch.bands.ravel())
        texts = needles // BANDS
        # A pair sharing several bands is judged more than once here: cheaper than making the pairs distinct first.
        agreeing = np.empty(len(positions), dtype=np.int64)
        for start in range(0, len(positions), PAIRS_AT_ONCE):  # bounded: a large index has many candidates
            part = slice(start, start + PAIRS_AT_ONCE)
            agreeing[part] = agreeing_hashes(self._signatures[positions[part]], low[texts[part]])
        likely = agreeing >= _likely_count(self.threshold)
        pairs = np.unique(texts[likely] << 32 | positions[likely])
        return pairs >> 32, pairs & 0xFFFFFFFF

    def _best_stored(self, batch: FingerprintBatch, texts: np.ndarray, positions: np.ndarray) -> dict[int, Best]:
        """For each text of the batch, the most similar of its likely stored texts (the earliest on a tie) by exact
        Jaccard, where that reaches the threshold. The shingles of every pair are read at once."""
        if not len(texts):
            return {}
        others, lengths = self._grams.gather(positions)
        bounds = np.flatnonzero(np.diff(texts)) + 1
        starts, ends = np.concatenate([[0], bounds]), np.append(bounds, len(texts))
        gram_ends = np.cumsum(lengths)
        found: dict[int, Best] = {}
        for start, end in zip(starts.tolist(), ends.tolist(), strict=True):
            text = int(texts[start])
            first_gram = int(gram_ends[start - 1]) if start else 0
            similarities = jaccard_flat(
                batch.item(text).grams, others[first_gram : int(gram_ends[end - 1])], lengths[start:end]
            )
            best = int(np.argmax(similarities))  # the earliest of the most similar
            if similarities[best] >= self.threshold:
                found[text] = (int(positions[start + best]), float(similarities[best]))
        return found

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
        # The kept texts' grams, one after another.
        self._grams.extend(pending.batch.grams[concatenated_ranges(starts, lengths)], lengths)
        self._exact.add_run(pending.batch.keys[kept], positions)
        self._bands.add_run(pending.batch.bands[kept].ravel(), np.repeat(positions, BANDS))

    def _reserve(self, size: int) -> None:
        if size > len(self._ids):
            count = len(self)
            self._ids = grown(self._ids, size)
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

    def _most_similar(
        self, grams: np.ndarray, likely: list[int], pending: _Pending | None, earlier: Best | None = None
    ) -> Hit | None:
        """Of ``likely`` (ascending positions), the most similar at or over the threshold, the earliest on a tie;
        ``earlier`` is the best of candidates before all of ``likely``, already judged."""
        best = earlier
        if likely:
            base = pending.base if pending is not None else len(self)
            others = [
                self._grams.get(position) if position < base else self._pending_grams(position, pending)
                for position in likely
            ]
            similarities = jaccard_many(grams, others)
            at = int(np.argmax(similarities))  # the earliest of the most similar
            if similarities[at] >= self.threshold and (best is None or similarities[at] > best[1]):
                best = (likely[at], float(similarities[at]))
        if best is None:
            return None
        return ("near_duplicate", self._id_at(best[0], pending), best[1])

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
