"""Stable inode numbers: derived from the path, so they survive remounts.

An entry's number is xxh64 of its path in the merged tree; the names of a
hard-linked file of a layer share the number of (layer, backing inode), so it
does not depend on which name is read first. Collisions (some 1e-9 likely
for a million entries) are resolved by rehashing with a counter. An entry of
the upper dir that was renamed (or took the place of a removed one) keeps the
number it had, recorded beside it (layerfs.upperdir).
"""

from __future__ import annotations

import xxhash

ROOT_INODE = 1
_RESERVED = frozenset({0, ROOT_INODE})
# FUSE and most tools are happy with 64-bit numbers, but some 32-bit stat
# users are not; keep the top bit clear to stay positive in signed APIs.
_MASK = (1 << 63) - 1


class InodeNumbers:
    """Hands out numbers for paths; remembers which are taken."""

    __slots__ = ("_taken",)

    def __init__(self) -> None:
        self._taken: set[int] = set(_RESERVED)

    def assign(self, path: bytes) -> int:
        number = xxhash.xxh64_intdigest(path) & _MASK
        salt = 0
        while number in self._taken:
            salt += 1
            number = xxhash.xxh64_intdigest(path, seed=salt) & _MASK
        self._taken.add(number)
        return number

    @staticmethod
    def natural(path: bytes) -> int:
        """The number ``path`` gets when nothing else has taken it."""
        return xxhash.xxh64_intdigest(path) & _MASK

    def claim(self, number: int, path: bytes) -> int:
        """Take ``number`` (one an entry kept from an earlier mount) if it is free,
        else hand out one for ``path``."""
        if 0 < number <= _MASK and number not in self._taken:
            self._taken.add(number)
            return number
        return self.assign(path)

    def release(self, number: int) -> None:
        if number not in _RESERVED:
            self._taken.discard(number)
