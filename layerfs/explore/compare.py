"""``layerfs compare``: an image mounted by layerfs against the kernel overlay's mount of
the same layers, or against a directory (``docker export`` extracted, a container's
merged dir).

Both trees are walked with :mod:`layerfs.treediff` (type, mode, owner, size, mtime,
rdev, link target, xattrs, xxhash content, nlink, hard-link groups, readdir names);
every difference is reported, except a directory's nlink of 1 against a count (the
overlay does not count the links of a merged directory). Mounts are always unmounted, also on failure.

JSON schema (``--json``)::

    {"image": str, "against": "kernel" | DIR,
     "identical": bool,
     "entries": {"layerfs": int, "reference": int},
     "summary": {PROPERTY: int},             # differences per property
     "differences": [{"path": str,            # os.fsdecode, absolute
                      "property": "presence|type|mode|uid|gid|size|mtime_ns|rdev|target|"
                                  "xattrs|content|nlink|links",
                      "layerfs": value, "reference": value}]}
    values: bytes as os.fsdecode strings, xattrs {name: value}, links [path, ...],
    presence: the entry's type on the side that has it, null on the other
"""

from __future__ import annotations

import contextlib
import os
import sys
import tempfile
from collections import Counter
from pathlib import Path
from typing import Sequence

from .. import treediff
from ..errors import UsageError
from ..index import PathIndex
from ..rmtree import remove_tree
from ..sizes import plural
from .mounts import kernel_overlay_mounted, layerfs_mounted
from .native import native_layers
from .render import Painter, dumps, json_path, shown_path

EXIT_DIFFERENT = 3


def _json_value(value: object) -> object:
    if isinstance(value, bytes):
        return os.fsdecode(value)
    if isinstance(value, dict):
        return {os.fsdecode(k): _json_value(v) for k, v in value.items()}
    if isinstance(value, (tuple, list)):
        return [json_path(v) if isinstance(v, bytes) else _json_value(v) for v in value]
    return value


class Comparison:
    def __init__(self, differences: list[treediff.Difference], left_entries: int,
                 right_entries: int) -> None:
        self.differences = differences
        self.left_entries = left_entries
        self.right_entries = right_entries

    @property
    def identical(self) -> bool:
        return not self.differences

    def summary(self) -> dict[str, int]:
        return dict(Counter(d.property for d in self.differences))


def _say(message: str) -> None:
    """Progress on stderr, for a terminal only (walking a big image takes a while)."""
    if sys.stderr.isatty():
        sys.stderr.write(f"\r\x1b[K{message}" if message else "\r\x1b[K")
        sys.stderr.flush()


def compare_trees(layerfs_root: Path, reference_root: Path,
                  properties: Sequence[str]) -> Comparison:
    hashing = "content" in properties
    _say("walking the layerfs mount...")
    left = treediff.snapshot(layerfs_root, hash_content=hashing)
    _say(f"walking the reference ({plural(len(left), 'entry')} in layerfs)...")
    right = treediff.snapshot(reference_root, hash_content=hashing)
    _say("")
    differences = [d for d in treediff.diff(left, right, properties)
                   if not _uncounted_links(d, left, right)]
    return Comparison(differences, len(left), len(right))


def _uncounted_links(difference: treediff.Difference, left: dict, right: dict) -> bool:
    """A directory's nlink of 1 on one side: the overlay's "not counted" for a directory
    merged from several layers (the kernel and layerfs alike; find(1) reads 1 so too),
    where a plain copy counts its subdirectories. Not a difference."""
    if difference.property != "nlink" or left[difference.path].type != "d":
        return False
    return 1 in (difference.left, difference.right)


def run(index: PathIndex, mount_args: list[str], against: str, *,
        properties: Sequence[str], tmp_dir: str | None = None) -> Comparison:
    work = Path(tempfile.mkdtemp(prefix="layerfs-compare-", dir=tmp_dir))
    try:
        with layerfs_mounted(work / "layerfs", mount_args) as ours:
            if against == "kernel":
                _say("preparing overlay-native layers...")
                lowers = native_layers(index, work)
                with kernel_overlay_mounted(work / "kernel", lowers, work / "l") as theirs:
                    return compare_trees(ours, theirs, properties)
            reference = Path(against)
            if not reference.is_dir():
                raise UsageError(f"--against {against}: not a directory")
            return compare_trees(ours, reference, properties)
    finally:
        with contextlib.suppress(OSError):  # best effort: the comparison's outcome matters
            remove_tree(work)


def to_json(image_name: str, against: str, comparison: Comparison) -> str:
    return dumps({
        "image": image_name, "against": against, "identical": comparison.identical,
        "entries": {"layerfs": comparison.left_entries, "reference": comparison.right_entries},
        "summary": comparison.summary(),
        "differences": [{"path": json_path(d.path), "property": d.property,
                         "layerfs": _json_value(d.left), "reference": _json_value(d.right)}
                        for d in comparison.differences],
    })


def _shown(value: object) -> str:
    if isinstance(value, bytes):
        return repr(os.fsdecode(value))
    if isinstance(value, int) and not isinstance(value, bool) and value > 0o7777:
        return str(value)
    return repr(_json_value(value))


def to_text(against: str, comparison: Comparison, paint: Painter) -> str:
    reference = "the kernel overlay" if against == "kernel" else against
    lines = []
    for difference in comparison.differences:
        where = shown_path(difference.path)
        if difference.property == "presence":
            side = "layerfs" if difference.right is None else reference
            lines.append(f"{paint(where, 'bold')}: only in {side} ({difference.left or difference.right})")
        else:
            lines.append(f"{paint(where, 'bold')}: {paint(difference.property, 'yellow')}: "
                         f"layerfs {_shown(difference.left)}, reference {_shown(difference.right)}")
    if comparison.identical:
        lines.append(paint(f"identical: {plural(comparison.left_entries, 'entry')}, layerfs = {reference}",
                           "green", "bold"))
    else:
        counts = ", ".join(f"{name} {count}" for name, count in sorted(comparison.summary().items()))
        paths = len({d.path for d in comparison.differences})
        lines.append(paint(f"{plural(len(comparison.differences), 'difference')} in "
                           f"{plural(paths, 'path')} (layerfs "
                           f"{plural(comparison.left_entries, 'entry')}, {reference} "
                           f"{comparison.right_entries}): {counts}", "red", "bold"))
    return "\n".join(lines)
