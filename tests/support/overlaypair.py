"""Two writable overlays side by side: the kernel's and layerfs's, over identical lowers.

:class:`OverlayPair` writes one layer stack twice (natively), gives each
overlay its own upper and work dir, mounts both, and applies the same
operation to each mount root, recording the result or the errno. It then
compares the merged trees, and after unmounting the upper dirs themselves,
and can swap the uppers over (the kernel mounting what layerfs wrote, and
layerfs what the kernel wrote). Every mount is torn down on exit.
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import stat
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

from layerfs import treediff
from tests.support.layerspec import FIXED_MTIME_NS, materialize_stack
from tests.support.mounting import force_unmount, layerfs_mounted

Operation = Callable[[Path], Any]

# Bookkeeping xattrs the kernel writes and layerfs does not need (file handles
# of lower origins, the "impure" hint, the overlay uuid), and layerfs's own
# kept inode numbers: not part of the format either side relies on.
KERNEL_ONLY_XATTRS = tuple(prefix + name for prefix in (b"trusted.overlay.", b"user.overlay.")
                           for name in (b"origin", b"impure", b"uuid", b"nlink",
                                        b"layerfs.ino"))
MERGED_PROPERTIES = ("type", "mode", "uid", "gid", "size", "rdev", "target", "xattrs",
                     "content", "nlink", "links")
UPPER_PROPERTIES = ("type", "mode", "uid", "gid", "size", "rdev", "target", "xattrs",
                    "content")


def outcome(operation: Operation, root: Path) -> tuple[str, Any]:
    """("ok", value) or ("err", errno name) of one operation on one mount."""
    try:
        return ("ok", operation(root))
    except OSError as exc:
        return ("err", errno.errorcode.get(exc.errno or 0, str(exc.errno)))


IN_USE_WAIT = 30.0
"""Seconds a kernel mount waits for its upper dir to be released."""


def mount_kernel_overlay(options: str, mountpoint: Path) -> None:
    """``mount -t overlay``, waiting a while for an upper dir still in use. An
    unmounted overlay keeps its upper dir "in use" as long as any mount namespace
    still holds a copy of the mount (one created meanwhile by another program,
    e.g. a rootless tool's unshare), and with index=on the kernel then refuses
    the next mount of that upper; the copy goes when that program ends."""
    deadline = time.monotonic() + IN_USE_WAIT
    while True:
        result = subprocess.run(["mount", "-t", "overlay", "overlay", "-o", options,
                                 str(mountpoint)], capture_output=True)
        if result.returncode == 0:
            return
        if time.monotonic() > deadline or "index=on" not in options:
            raise subprocess.CalledProcessError(result.returncode, result.args,
                                                result.stdout, result.stderr)
        time.sleep(0.1)


def _escape(path: Path) -> str:
    return str(path).replace("\\", "\\\\").replace(":", "\\:")


@dataclass
class Side:
    name: str
    lowers: list[Path]
    upper: Path
    work: Path
    mnt: Path

    def options(self) -> str:
        lowerdir = ":".join(_escape(p) for p in reversed(self.lowers))
        return f"lowerdir={lowerdir},upperdir={self.upper},workdir={self.work}"


class OverlayPair:
    def __init__(self, base: Path, stack: Sequence[dict], *, kernel_options: Sequence[str] = (),
                 layerfs_options: Sequence[str] = ()) -> None:
        self.base = base
        userxattr = "userxattr" in kernel_options
        # The kernel refuses redirect_dir=on with userxattr (it follows none there).
        defaults = ["index=off", "metacopy=off"] + ([] if userxattr else ["redirect_dir=on"])
        self.kernel_options = [*defaults, *kernel_options]
        self.layerfs_options = list(layerfs_options)
        self.sides = {}
        form = "user" if userxattr else "native"
        for name in ("kernel", "layerfs"):
            lowers = materialize_stack(list(stack), base / name, form)
            if len(lowers) < 1:
                raise ValueError("a stack needs at least one layer")
            root = base / name
            side = Side(name, lowers, root / "upper", root / "work", root / "mnt")
            for path in (side.upper, side.work, side.mnt):
                path.mkdir()
            os.utime(side.upper, ns=(FIXED_MTIME_NS, FIXED_MTIME_NS))
            self.sides[name] = side
        self.kernel, self.layerfs = self.sides["kernel"], self.sides["layerfs"]
        self.started_ns = time.time_ns()
        self.log: list[str] = []

    # -- mounting ---------------------------------------------------------------------

    @contextlib.contextmanager
    def kernel_mounted(self, side: Side | None = None) -> Iterator[Path]:
        side = side or self.kernel
        options = ",".join([side.options(), *self.kernel_options])
        mount_kernel_overlay(options, side.mnt)
        try:
            yield side.mnt
        finally:
            force_unmount(side.mnt)

    @contextlib.contextmanager
    def layerfs_mounted(self, side: Side | None = None) -> Iterator[Path]:
        side = side or self.layerfs
        options = ",".join([side.options(), *self.layerfs_options])
        with layerfs_mounted(side.mnt, "-o", options):
            yield side.mnt

    @contextlib.contextmanager
    def mounted(self) -> Iterator["OverlayPair"]:
        with self.kernel_mounted(), self.layerfs_mounted():
            yield self

    def rotate(self) -> None:
        """(Unmounted) make each side's upper dir its top lower layer, with a fresh
        upper and work dir: a committed container layer."""
        for side in self.sides.values():
            number = len(side.lowers)
            side.lowers.append(side.upper)
            side.upper = side.upper.parent / f"upper{number}"
            side.work = side.work.parent / f"work{number}"
            side.upper.mkdir()
            side.work.mkdir()
            os.utime(side.upper, ns=(FIXED_MTIME_NS, FIXED_MTIME_NS))

    # -- operating ----------------------------------------------------------------------

    def apply(self, operation: Operation, label: str = "") -> tuple[Any, Any]:
        """Run ``operation`` on both mounts; assert the same outcome; return it."""
        expected = outcome(operation, self.kernel.mnt)
        seen = outcome(operation, self.layerfs.mnt)
        shown = label or getattr(operation, "__name__", repr(operation))
        self.log.append(shown)
        assert seen == expected, f"{shown}: kernel {expected!r}, layerfs {seen!r}\n" \
                                 f"after: {self.log}"
        return expected

    # -- comparing ----------------------------------------------------------------------

    def merged_differences(self, kernel_root: Path | None = None,
                           layerfs_root: Path | None = None) -> list[str]:
        expected = treediff.snapshot(kernel_root or self.kernel.mnt)
        seen = treediff.snapshot(layerfs_root or self.layerfs.mnt)
        return self.tree_differences(expected, seen)

    def tree_differences(self, expected: dict, seen: dict) -> list[str]:
        found = [str(d) for d in treediff.diff(expected, seen, MERGED_PROPERTIES)
                 if not (d.property == "presence" and d.left == treediff.PHANTOM)]
        # Times: what the kernel kept from a lower layer layerfs keeps too;
        # what the kernel set during the test layerfs sets during the test.
        for path in sorted(expected.keys() & seen.keys()):
            left, right = expected[path].mtime_ns, seen[path].mtime_ns
            if left < self.started_ns:
                if right != left:
                    found.append(f"{os.fsdecode(path) or '/'}: mtime {right} != kept {left}")
            elif right < self.started_ns:
                found.append(f"{os.fsdecode(path) or '/'}: mtime {right} was not updated")
        return found

    def check(self) -> None:
        differences = self.merged_differences()
        assert not differences, "\n".join(differences) + f"\nafter: {self.log}"

    def upper_differences(self) -> list[str]:
        """The two upper dirs, offline: paths, types, whiteouts, opaque and redirect
        xattrs, owners, modes, content."""
        expected = upper_snapshot(self.kernel.upper)
        seen = upper_snapshot(self.layerfs.upper)
        return [str(d) for d in treediff.diff(expected, seen, UPPER_PROPERTIES)]


def upper_snapshot(upper: Path) -> dict:
    snapshot = treediff.snapshot(upper, skip_xattrs=KERNEL_ONLY_XATTRS)
    for entry in snapshot.values():
        if entry.type == "c" and entry.rdev == 0:
            entry.mode = 0  # a whiteout: its permission bits mean nothing
    return snapshot


def reset_work(side: Side) -> None:
    shutil.rmtree(side.work, ignore_errors=True)
    side.work.mkdir()


def is_whiteout(path: Path) -> bool:
    st = os.lstat(path)
    return stat.S_ISCHR(st.st_mode) and st.st_rdev == 0
