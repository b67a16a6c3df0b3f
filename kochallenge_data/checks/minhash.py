"""What a text's near-duplicate fingerprint is: MinHash over character 3-gram shingles, cut into LSH bands.

126 multiply-shift hashes in 18 bands of 7. Long bands keep built data fast: records that share two of three
challenge lines (Jaccard about 0.5) rarely become candidates (13%), while a pair at 0.8 is found with probability
0.985 and at 0.85 with 0.999. Every fingerprint is the same on every machine (fixed multipliers, no salted hashes);
computing them is the costly part, so workers do it and send :class:`FingerprintBatch` back.
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

# Fixed multipliers: the same shingles give the same signature on every machine.
_GENERATOR = np.random.default_rng(20260301)
_MULTIPLIERS = _GENERATOR.integers(1, 2**63, size=HASHES, dtype=np.uint64) | np.uint64(1)
_OFFSETS = _GENERATOR.integers(0, 2**63, size=HASHES, dtype=np.uint64)
# Mixing constants that turn a band's seven values into one key (collisions only add candidates).
_BAND_MIX = np.random.default_rng(20260302).integers(1, 2**63, size=(BANDS, ROWS), dtype=np.uint64) | np.uint64(1)
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
    widest = max((sum(len(g) for g in grams[at : at + chunk]) for at in range(0, len(grams), chunk)), default=0)
    # One buffer for every chunk: a fresh array of megabytes per chunk costs page faults on each.
    scratch = np.empty(HASHES * widest, dtype=np.uint64)
    for start in range(0, len(grams), chunk):
        part = grams[start : start + chunk]
        flat = np.concatenate(part)
        hashed = scratch[: HASHES * len(flat)].reshape(HASHES, len(flat))
        np.multiply(_MULTIPLIERS[:, None], flat[None, :], out=hashed)
        hashed += _OFFSETS[:, None]
        starts = np.cumsum([0] + [len(g) for g in part[:-1]])
        lowest = np.minimum.reduceat(hashed, starts, axis=1)
        signatures[start : start + len(part)] = (lowest >> np.uint64(32)).T
    return signatures
