"""Owner translation between what the layers store and what a mount shows (pure).

Two id domains meet in a mount: *stored* ids are the owners the layers and the
upper dir hold (as the daemon reads them: from disk, or from the sidecar of a
rootless unpack), *shown* ids are what ``stat`` through the mount reports and
what the kernel's ``default_permissions`` checks the caller against. Without
options the two are the same. The options are fuse-overlayfs's, with its
meaning:

- ``uidmapping=CONTAINER:HOST:SIZE[:CONTAINER:HOST:SIZE...]`` (and
  ``gidmapping=``): a stored id ``HOST + i`` shows as ``CONTAINER + i``
  (``i < SIZE``); a stored id no range covers shows as the overflow id
  (``/proc/sys/kernel/overflowuid``, 65534), as an unmapped owner does in a user
  namespace. The spelling is a user namespace's ``uid_map`` on one line.
- ``squash_to_root``: every entry shows as owned by 0:0;
  ``squash_to_uid=N`` / ``squash_to_gid=N``: every entry shows with that uid /
  gid (they take precedence over ``squash_to_root``).
- ``--as-me`` (layerfs's own): every entry shows as the caller's uid and gid, so
  the owner's permission bits are the ones the kernel applies to the caller.

Squashing is for display and permission checks only: it cannot be inverted.
What an upper records goes the other way through the ranges alone: a new entry
is owned by the caller's id mapped back (``CONTAINER`` to ``HOST``; unchanged
without ranges), and ``chown`` through the mount stores the requested id mapped
back. A caller or a requested id no range covers fails as the kernel fails for
an id a user namespace does not map: ``EOVERFLOW`` to create, ``EINVAL`` to
chown.
"""

from __future__ import annotations

import errno
import os
from dataclasses import dataclass
from itertools import pairwise

from .errors import UsageError

OPTION_KEYS = ("uidmapping", "gidmapping", "squash_to_uid", "squash_to_gid")
OPTION_FLAGS = ("squash_to_root",)
MAX_ID = 0xFFFFFFFE
"""The highest valid id: (uid_t)-1 means "no change" to chown."""


def _overflow(kind: str) -> int:
    try:
        with open(f"/proc/sys/kernel/overflow{kind}") as knob:
            return int(knob.read())
    except (OSError, ValueError):
        return 65534


@dataclass(frozen=True, slots=True)
class IdRange:
    """``size`` stored ids from ``host`` show as ids from ``container``."""

    container: int
    host: int
    size: int


def parse_mapping(option: str, value: str) -> tuple[IdRange, ...]:
    """``CONTAINER:HOST:SIZE[:...]`` as fuse-overlayfs spells it."""
    fields = value.split(":")
    if len(fields) % 3 or not value:
        raise UsageError(f"-o {option}={value}: expected CONTAINER:HOST:SIZE triples")
    try:
        numbers = [int(field, 10) for field in fields]
    except ValueError:
        raise UsageError(f"-o {option}={value}: ids must be decimal numbers") from None
    ranges = tuple(IdRange(*numbers[i:i + 3]) for i in range(0, len(numbers), 3))
    for entry in ranges:
        if entry.size <= 0 or min(entry.container, entry.host) < 0 or \
                max(entry.container, entry.host) + entry.size - 1 > MAX_ID:
            raise UsageError(f"-o {option}={value}: {entry.container}:{entry.host}:{entry.size} "
                             "is not a valid range")
    for side in ("container", "host"):
        spans = sorted((getattr(e, side), getattr(e, side) + e.size) for e in ranges)
        if any(start < end for (_, end), (start, _) in pairwise(spans)):
            raise UsageError(f"-o {option}={value}: ranges overlap on the {side} side")
    return ranges


def _parse_id(option: str, value: str) -> int:
    try:
        number = int(value, 10)
    except ValueError:
        number = -1
    if not 0 <= number <= MAX_ID:
        raise UsageError(f"-o {option}={value}: expected a numeric id")
    return number


@dataclass(frozen=True, slots=True)
class IdMap:
    """How a mount shows stored owners, and stores the owners it is given."""

    uid_ranges: tuple[IdRange, ...] = ()
    gid_ranges: tuple[IdRange, ...] = ()
    squash_uid: int | None = None
    squash_gid: int | None = None
    overflow_uid: int = 65534
    overflow_gid: int = 65534

    @property
    def is_identity(self) -> bool:
        return not (self.uid_ranges or self.gid_ranges) and \
            self.squash_uid is None and self.squash_gid is None

    # -- stored -> shown (stat, and what default_permissions checks) ------------------

    def shown_uid(self, uid: int) -> int:
        if self.squash_uid is not None:
            return self.squash_uid
        return _forward(self.uid_ranges, uid, self.overflow_uid)

    def shown_gid(self, gid: int) -> int:
        if self.squash_gid is not None:
            return self.squash_gid
        return _forward(self.gid_ranges, gid, self.overflow_gid)

    # -- shown -> stored (the owner of a new entry, chown) -----------------------------

    def new_owner(self, uid: int, gid: int) -> tuple[int, int]:
        """The stored owner of what the caller ``uid``:``gid`` creates (EOVERFLOW
        when a range exists and none covers the caller)."""
        return self._stored(uid, gid, errno.EOVERFLOW)

    def chown_to(self, uid: int | None, gid: int | None) -> tuple[int | None, int | None]:
        """The stored ids a ``chown`` to ``uid``/``gid`` records (None: unchanged);
        EINVAL for an id no range covers."""
        stored_uid = None if uid is None else _backward(self.uid_ranges, uid, errno.EINVAL)
        stored_gid = None if gid is None else _backward(self.gid_ranges, gid, errno.EINVAL)
        return stored_uid, stored_gid

    def _stored(self, uid: int, gid: int, error: int) -> tuple[int, int]:
        return _backward(self.uid_ranges, uid, error), _backward(self.gid_ranges, gid, error)


IDENTITY = IdMap()


def _forward(ranges: tuple[IdRange, ...], stored: int, overflow: int) -> int:
    if not ranges:
        return stored
    for entry in ranges:
        if entry.host <= stored < entry.host + entry.size:
            return entry.container + stored - entry.host
    return overflow


def _backward(ranges: tuple[IdRange, ...], shown: int, error: int) -> int:
    if not ranges:
        return shown
    for entry in ranges:
        if entry.container <= shown < entry.container + entry.size:
            return entry.host + shown - entry.container
    raise OSError(error, os.strerror(error))


def build_id_map(options: dict[str, str | None], *, as_me: bool = False) -> IdMap:
    """The map the id options ask for (``options``: key -> value, None for a flag, as
    collected by :func:`layerfs.options.parse_options`); ``as_me`` shows everything as
    the calling process's uid and gid."""
    squash_uid = squash_gid = None
    if "squash_to_root" in options:
        squash_uid = squash_gid = 0
    if options.get("squash_to_uid") is not None:
        squash_uid = _parse_id("squash_to_uid", options["squash_to_uid"] or "")
    if options.get("squash_to_gid") is not None:
        squash_gid = _parse_id("squash_to_gid", options["squash_to_gid"] or "")
    if as_me:
        if options:
            raise UsageError("--as-me shows every owner as yours: give it without "
                             "squash_to_*/uidmapping/gidmapping options")
        squash_uid, squash_gid = os.geteuid(), os.getegid()
    uid_ranges = parse_mapping("uidmapping", options["uidmapping"] or "") \
        if "uidmapping" in options else ()
    gid_ranges = parse_mapping("gidmapping", options["gidmapping"] or "") \
        if "gidmapping" in options else ()
    return IdMap(uid_ranges, gid_ranges, squash_uid, squash_gid,
                 overflow_uid=_overflow("uid"), overflow_gid=_overflow("gid"))
