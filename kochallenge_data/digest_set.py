"""A set of 64-bit digests in 16 bytes an entry or less, for the build's record keys.

A Python ``set`` of large ints costs about 70 bytes an entry (the int object and its table slot): 70 MB at a
million records. The digests are already uniform hashes, so open addressing on their low bits in one flat
``array`` needs no hashing of its own. Zero marks an empty slot, so the digest 0 is kept apart.
"""

from __future__ import annotations

from array import array

_EMPTY = 0
# Grow at half full: linear probing stays short (about 1.5 probes a hit, 2.5 a miss).
_MAX_LOAD = 0.5
_INITIAL_SLOTS = 1 << 12


class DigestSet:
    """``add`` and ``in`` for ints in 0..2**64-1, with a flat table of unsigned 64-bit slots."""

    def __init__(self) -> None:
        self._slots = _empty_table(_INITIAL_SLOTS)
        self._mask = _INITIAL_SLOTS - 1
        self._count = 0
        self._has_zero = False

    def __len__(self) -> int:
        return self._count + self._has_zero

    def __contains__(self, digest: int) -> bool:
        if digest == _EMPTY:
            return self._has_zero
        return self._find(digest)[1]

    def add(self, digest: int) -> None:
        if digest == _EMPTY:
            self._has_zero = True
            return
        at, present = self._find(digest)
        if not present:
            self._slots[at] = digest
            self._count += 1
            if self._count > _MAX_LOAD * len(self._slots):
                self._grow()

    def _find(self, digest: int) -> tuple[int, bool]:
        """The slot that holds ``digest``, or the empty slot where it belongs; and whether it is there."""
        slots, mask = self._slots, self._mask
        at = digest & mask
        while True:
            stored = slots[at]
            if stored in (digest, _EMPTY):
                return at, stored == digest
            at = (at + 1) & mask

    def _grow(self) -> None:
        old = self._slots
        self._slots = _empty_table(2 * len(old))
        self._mask = len(self._slots) - 1
        for digest in old:
            if digest != _EMPTY:
                self._slots[self._find(digest)[0]] = digest


def _empty_table(size: int) -> array[int]:
    return array("Q", bytes(8 * size))
