"""How layers encode deletions and opaque directories, and which xattrs are overlay-private.

Pure rules, no I/O: the scanner asks these functions about names, device
numbers and xattr values it has read, and gets back a classification.

Forms understood (FORMATS.md 1.3, 6.5, 8.1):
- OCI/AUFS: a file ``.wh.NAME`` deletes NAME; ``.wh..wh..opq`` makes its
  directory opaque; other ``.wh..wh.*`` names are AUFS bookkeeping.
- overlay: a 0/0 character device deletes its own name; a directory with
  ``{trusted,user}.overlay.opaque=y`` (or ``user.fuseoverlayfs.opaque=y``) is
  opaque; in a directory marked ``overlay.opaque=x`` a zero-size regular file
  carrying ``overlay.whiteout`` is a whiteout too.
"""

from __future__ import annotations

import stat

WHITEOUT_PREFIX = b".wh."
OPAQUE_MARKER = b".wh..wh..opq"
AUFS_META_PREFIX = b".wh..wh."

OVERLAY_XATTR_PREFIXES = (b"trusted.overlay.", b"user.overlay.")
OPAQUE_XATTRS = (b"trusted.overlay.opaque", b"user.overlay.opaque", b"user.fuseoverlayfs.opaque")
WHITEOUT_XATTRS = (b"trusted.overlay.whiteout", b"user.overlay.whiteout")
# A renamed dir's pointer to where the lower layers hold it (layerfs.redirects).
REDIRECT_XATTRS = (b"trusted.overlay.redirect", b"user.overlay.redirect")
# A kernel upper's file copied up with metacopy=on: metadata only, its data
# still in the lower layer (at its redirect, or at the same path).
METACOPY_XATTRS = (b"trusted.overlay.metacopy", b"user.overlay.metacopy")
# layerfs's own: the inode number an upper entry keeps across renames and
# remounts, where it differs from its path's (layerfs.inodes). In the overlay
# namespace, so that the kernel hides it and never copies it.
INODE_XATTRS = (b"trusted.overlay.layerfs.ino", b"user.overlay.layerfs.ino")
# The kernel's inode index (index=on, layerfs.hardlinkindex): a copy's lower
# file handle, and its merged link count relative to the upper inode's.
ORIGIN_XATTRS = (b"trusted.overlay.origin", b"user.overlay.origin")
NLINK_XATTRS = (b"trusted.overlay.nlink", b"user.overlay.nlink")
OVERRIDE_STAT_XATTR = b"user.containers.override_stat"
# Xattrs that describe the layer encoding itself; never shown in the merged view.
PRIVATE_XATTRS = frozenset({b"user.fuseoverlayfs.opaque", OVERRIDE_STAT_XATTR})
# The kernel shows trusted.overlay.overlay.X of a lower layer as trusted.overlay.X.
_ESCAPED_PREFIX = b"trusted.overlay.overlay."


class MarkerName:
    """What a ``.wh.``-prefixed directory entry means."""

    OPAQUE = "opaque"
    WHITEOUT = "whiteout"
    AUFS_META = "aufs-meta"


def classify_marker(name: bytes) -> tuple[str, bytes] | None:
    """Classify a directory entry name: None for an ordinary name.

    Returns (kind, target) where target is the deleted name for WHITEOUT.
    """
    if not name.startswith(WHITEOUT_PREFIX):
        return None
    if name == OPAQUE_MARKER:
        return (MarkerName.OPAQUE, b"")
    if name.startswith(AUFS_META_PREFIX):
        return (MarkerName.AUFS_META, b"")
    target = name[len(WHITEOUT_PREFIX):]
    if not target or target in (b".", b".."):
        return (MarkerName.AUFS_META, b"")
    return (MarkerName.WHITEOUT, target)


def is_whiteout_device(mode: int, rdev: int) -> bool:
    """The overlay whiteout: a character device with device number 0/0."""
    return stat.S_ISCHR(mode) and rdev == 0


def opaque_state(xattrs: dict[bytes, bytes]) -> tuple[bool, bool]:
    """(opaque, has_xattr_whiteouts) for a directory with these xattr values.

    ``y`` makes a directory opaque; ``x`` only announces xattr whiteouts among
    its children (the kernel's "xwhiteouts"), it does not make it opaque.
    """
    opaque = False
    xwhiteouts = False
    for name in OPAQUE_XATTRS:
        value = xattrs.get(name)
        if value is None:
            continue
        value = value.rstrip(b"\0")
        if value == b"y":
            opaque = True
        elif value == b"x" and name != b"user.fuseoverlayfs.opaque":
            xwhiteouts = True
    return opaque, xwhiteouts


def has_whiteout_xattr(names: list[bytes] | tuple[bytes, ...]) -> bool:
    return any(name in WHITEOUT_XATTRS for name in names)


def visible_xattr_name(name: bytes) -> bytes | None:
    """The name under which a backing xattr shows in the merged view, or None if hidden."""
    if name.startswith(_ESCAPED_PREFIX):
        return b"trusted.overlay." + name[len(_ESCAPED_PREFIX):]
    if name.startswith(OVERLAY_XATTR_PREFIXES) or name in PRIVATE_XATTRS:
        return None
    return name


def backing_xattr_name(name: bytes) -> bytes | None:
    """The backing xattr that holds merged-view xattr ``name``, or None if it cannot exist."""
    if name.startswith(b"trusted.overlay."):
        return _ESCAPED_PREFIX + name[len(b"trusted.overlay."):]
    if name.startswith(OVERLAY_XATTR_PREFIXES) or name in PRIVATE_XATTRS:
        return None
    return name


def redirect_of(xattrs: dict[bytes, bytes]) -> bytes | None:
    """A directory's overlay redirect, from its xattr values (None if it has none)."""
    for name in REDIRECT_XATTRS:
        value = xattrs.get(name)
        if value:
            return value.rstrip(b"\0") or None
    return None


def is_metacopy(xattrs: dict[bytes, bytes]) -> bool:
    """Whether a file's xattr values mark it as a metadata-only copy."""
    return any(name in xattrs for name in METACOPY_XATTRS)


def kept_inode(xattrs: dict[bytes, bytes]) -> int | None:
    """The inode number an upper entry keeps, from its xattr values."""
    for name in INODE_XATTRS:
        value = xattrs.get(name)
        if value:
            try:
                return int(value.rstrip(b"\0"))
            except ValueError:
                return None
    return None
