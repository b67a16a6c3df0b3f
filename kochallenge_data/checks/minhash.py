"""What a text's near-duplicate fingerprint is: MinHash over character 3-gram shingles, cut into LSH bands.

126 hash values in 18 bands of 7, by one-permutation hashing: each shingle is hashed once, the hash's high bits
choose one of 126 bins and its low 32 bits compete for that bin's minimum; a bin no shingle fell into copies the
first filled bin of a fixed order of its own (optimal densification, Shrivastava 2017), so two texts agree on a bin
with a probability that follows their Jaccard similarity as with 126 separate hashes, while each shingle is hashed
once instead of 126 times.
Long bands keep built data fast: records that share two of three challenge lines (Jaccard about 0.5) rarely become
candidates (a quarter of pairs at 0.5 to 0.6), while a pair at 0.8 is found with probability 0.99 and at 0.85 with
0.999 (measured on built, foreign and one-line texts: ``bench/minhash_bench.py``). Every fingerprint is the same on
every machine (constants made by arithmetic, no salted hashes, no generator streams), and each text's is its own,
whatever else is in its batch; workers compute them and send :class:`FingerprintBatch` back.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from ..text import ZERO_WIDTH, nfc

SHINGLE = 3
BANDS = 18
ROWS = 7
HASHES = BANDS * ROWS

_LOW_32 = np.uint64(0xFFFFFFFF)


def mix64(values: np.ndarray) -> np.ndarray:
    """A fixed 64-bit mix of each value (MurmurHash3's finalizer): neighbouring shingle ids spread over all bits."""
    mixed: np.ndarray = values ^ (values >> np.uint64(33))
    mixed *= np.uint64(0xFF51AFD7ED558CCD)
    mixed ^= mixed >> np.uint64(33)
    mixed *= np.uint64(0xC4CEB9FE1A85EC53)
    mixed ^= mixed >> np.uint64(33)
    return mixed


# Fixed constants made by mixing the numbers 0, 1, 2, ...: the same on every machine and numpy version, as a
# seeded generator's stream need not be.
_MIXED_IDS = mix64(np.arange(HASHES * (HASHES + 1), dtype=np.uint64))
# Row b: the bins an empty bin b copies from, in order (the first filled one wins): a shuffle of all bins.
_FILL_ORDER = np.argsort(_MIXED_IDS[: HASHES * HASHES].reshape(HASHES, HASHES), axis=1)
# Odd multipliers that turn a band's seven values into one key (collisions only add candidates).
_BAND_MIX = (_MIXED_IDS[HASHES * HASHES :] | np.uint64(1)).reshape(BANDS, ROWS)
_BAND_SALT = np.uint64(0x9E3779B97F4A7C15)

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


def distinct_grams(keys: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    """:func:`_grams_of` of each normalized text, one text's after another, and where each text's grams end: one
    conversion to code points and one sort call per text, the rest a few numpy calls for all of them."""
    if not keys:
        return np.empty(0, dtype=np.uint64), np.empty(0, dtype=np.int64)
    # A text shorter than a shingle is padded with code 0, as _grams_of pads it.
    compact = [key.replace(" ", "").ljust(SHINGLE, "\0") for key in keys]
    lengths = np.array([len(text) for text in compact], dtype=np.int64)
    codes = np.frombuffer("".join(compact).encode("utf-32-le"), dtype=np.uint32).astype(np.uint64)
    every = (codes[:-2] << np.uint64(42)) ^ (codes[1:-1] << np.uint64(21)) ^ codes[2:]
    # Each text's own shingles, leaving out the two that straddle it and the next.
    counts = lengths - (SHINGLE - 1)
    ends = np.cumsum(counts)
    firsts = ends - counts
    grams = every[np.repeat(np.cumsum(lengths) - lengths - firsts, counts) + np.arange(ends[-1])]
    for first, end in zip(firsts.tolist(), ends.tolist(), strict=True):
        grams[first:end].sort()
    keep = np.empty(len(grams), dtype=bool)
    np.not_equal(grams[1:], grams[:-1], out=keep[1:])
    keep[firsts] = True
    distinct: np.ndarray = grams[keep]
    distinct_ends: np.ndarray = np.cumsum(np.add.reduceat(keep, firsts, dtype=np.int64))
    return distinct, distinct_ends


def shingles(text: str) -> np.ndarray:
    """Distinct character 3-gram ids of the normalized text (spaces dropped: spacing noise is not content)."""
    return _grams_of(normalized(text))


def minhash(grams: np.ndarray) -> np.ndarray:
    """The 126 values of one text's signature: :func:`signatures_of` for one text, in fewer numpy calls (``split``
    and the one-at-a-time index methods fingerprint a text at a time)."""
    if not len(grams):
        raise ValueError("a signature needs at least one shingle (a text's grams are never empty)")
    hashed = mix64(grams)
    bins = _bins(hashed)
    signature = np.full(HASHES, np.iinfo(np.uint32).max, dtype=np.uint32)
    np.minimum.at(signature, bins, (hashed & _LOW_32).astype(np.uint32))
    filled = np.zeros(HASHES, dtype=bool)
    filled[bins] = True
    empty = np.flatnonzero(~filled)
    if len(empty):
        order = _FILL_ORDER[empty]
        signature[empty] = signature[order[np.arange(len(empty)), filled[order].argmax(axis=1)]]
    return signature


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
    return jaccard_flat(grams, np.concatenate(others), np.array([len(other) for other in others], dtype=np.int64))


def jaccard_flat(grams: np.ndarray, flat: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """:func:`jaccard_many` with the others one after another in ``flat``, other ``i`` of ``lengths[i]`` values."""
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
    grams, ends = distinct_grams(keys)
    signatures = signatures_of(grams, ends)
    return FingerprintBatch(
        keys=np.array([exact_key(key) for key in keys], dtype=np.uint64),
        signatures=signatures,
        bands=band_keys_many(signatures),
        grams=grams,
        ends=ends,
    )


def _bins(hashed: np.ndarray) -> np.ndarray:
    """Each hash's bin: its high 32 bits times HASHES, shifted back, so every bin in 0..125 is equally likely."""
    bins: np.ndarray = (((hashed >> np.uint64(32)) * np.uint64(HASHES)) >> np.uint64(32)).astype(np.int64)
    return bins


def minhash_many(grams: Sequence[np.ndarray]) -> np.ndarray:
    """The signature of each gram array (none empty), (texts, HASHES)."""
    if not grams:
        return np.empty((0, HASHES), dtype=np.uint32)
    return signatures_of(np.concatenate(grams), np.cumsum([len(g) for g in grams], dtype=np.int64))


def signatures_of(grams: np.ndarray, ends: np.ndarray) -> np.ndarray:
    """The signature of each text whose grams end at ``ends`` in ``grams``, (texts, HASHES), in a few numpy calls
    for all of them."""
    signatures = np.full((len(ends), HASHES), np.iinfo(np.uint32).max, dtype=np.uint32)
    hashed = mix64(grams)
    counts = np.diff(ends, prepend=0)
    if len(counts) and counts.min() < 1:
        raise ValueError("a signature needs at least one shingle (a text's grams are never empty)")
    owners = np.repeat(np.arange(len(ends), dtype=np.int64) * HASHES, counts)
    cells = owners + _bins(hashed)
    np.minimum.at(signatures.reshape(-1), cells, (hashed & _LOW_32).astype(np.uint32))
    filled = np.zeros(signatures.size, dtype=bool)
    filled[cells] = True
    _densify(signatures, filled.reshape(signatures.shape))
    return signatures


def _densify(signatures: np.ndarray, filled: np.ndarray) -> None:
    """Each empty bin takes the value of the first filled bin in its row of :data:`_FILL_ORDER` (every text has a
    filled bin, so each finds one within HASHES steps). Only filled bins are read, so the order of copies is free."""
    texts, bins = np.nonzero(~filled)
    for step in range(HASHES):
        if not len(texts):
            return
        sources = _FILL_ORDER[bins, step]
        found = filled[texts, sources]
        signatures[texts[found], bins[found]] = signatures[texts[found], sources[found]]
        texts, bins = texts[~found], bins[~found]
