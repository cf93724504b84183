"""Random sequences of write operations: the kernel overlay and layerfs side by side.

A hypothesis state machine applies each step to both mounts (same outcome or
errno), compares the merged trees after every step, and at the end compares
the upper dirs and mounts each upper under the other overlay. A "commit" step
turns both uppers into lower layers of new mounts (redirects and whiteouts in
middle layers). Bounded: a few
dozen short sequences by default (LAYERFS_UPPER_EXAMPLES to change).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import stat
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule, run_state_machine_as_test

from layerfs import treediff
from tests.support.layerspec import Dir, File, Hardlink, Symlink, Whiteout
from tests.support.mounting import kernel_overlay_available
from tests.support.overlaypair import MERGED_PROPERTIES, OverlayPair, reset_work
from tests.upper import ops

NAMES = ["a", "b", "c"]
PATHS = NAMES + [f"{x}/{y}" for x in NAMES for y in NAMES] + ["a/a/a", "a/b/c", "b/a/b"]
paths = st.sampled_from(PATHS)
data = st.binary(max_size=40)

STACK = [
    {
        b"a/a": File(b"lower a/a"),
        b"a/b/c": File(b"deep"),
        b"a/c": Dir(),
        b"b/a/b": File(b"bab", mode=0o600),
        b"b/b": Symlink(b"../a/a"),
        b"c": File(b"top file", xattrs={b"user.x": b"1"}),
        b"b/c": Hardlink(b"c"),
    },
    {
        b"a/b": Dir(opaque=True),
        b"a/b/a": File(b"opaque child"),
        b"b/a/a": File(b"middle"),
        b"b/b": Whiteout(),
        b"c": File(b"upper c"),
    },
]


class OverlayMachine(RuleBasedStateMachine):
    KERNEL_OPTIONS: tuple[str, ...] = ()
    LAYERFS_OPTIONS: tuple[str, ...] = ()

    def __init__(self) -> None:
        super().__init__()
        base = Path(tempfile.mkdtemp(prefix="layerfs-random-", dir="/var/tmp"))
        self.base = base
        self.mounts = contextlib.ExitStack()
        try:
            self.pair = OverlayPair(base, STACK, kernel_options=self.KERNEL_OPTIONS,
                                    layerfs_options=self.LAYERFS_OPTIONS)
            self.mounts.enter_context(self.pair.mounted())
        except BaseException:
            self.mounts.close()
            shutil.rmtree(base, ignore_errors=True)
            raise
        self.mounted = True

    def apply(self, operation) -> None:
        self.pair.apply(operation)

    @rule(path=paths, content=data)
    def create(self, path, content):
        self.apply(ops.create(path, content))

    @rule(path=paths, content=data, offset=st.sampled_from([0, 3, 100]))
    def write(self, path, content, offset):
        self.apply(ops.write(path, content, offset))

    @rule(path=paths, content=data)
    def overwrite(self, path, content):
        self.apply(ops.overwrite(path, content))

    @rule(path=paths, size=st.sampled_from([0, 2, 50]))
    def truncate(self, path, size):
        self.apply(ops.truncate(path, size))

    @rule(path=paths)
    def unlink(self, path):
        self.apply(ops.unlink(path))

    @rule(path=paths, mode=st.sampled_from([0o755, 0o700]))
    def mkdir(self, path, mode):
        self.apply(ops.mkdir(path, mode))

    @rule(path=paths)
    def rmdir(self, path):
        self.apply(ops.rmdir(path))

    @rule(old=paths, new=paths)
    def rename(self, old, new):
        self.apply(ops.rename(old, new))

    @rule(path=paths, link_to=st.sampled_from(["a", "../c", "nowhere"]))
    def symlink(self, path, link_to):
        self.apply(ops.symlink(link_to, path))

    @rule(old=paths, new=paths)
    def link(self, old, new):
        self.apply(ops.link(old, new))

    @rule(path=paths, mode=st.sampled_from([0o600, 0o4755, 0o711]))
    def chmod(self, path, mode):
        self.apply(ops.chmod(path, mode))

    @rule(path=paths, uid=st.sampled_from([0, 1000]))
    def chown(self, path, uid):
        self.apply(ops.chown(path, uid, uid))

    @rule(path=paths, value=st.binary(min_size=1, max_size=5))
    def setxattr(self, path, value):
        self.apply(ops.setxattr(path, b"user.r", value))

    @rule(path=paths)
    def removexattr(self, path):
        self.apply(ops.removexattr(path, b"user.x"))

    @rule(path=paths)
    def mkfifo(self, path):
        self.apply(ops.mkfifo(path))

    @rule(path=paths)
    def read(self, path):
        self.apply(ops.read(path))

    @rule()
    def commit(self):
        """Unmount, make each upper the top lower layer of a new mount, go on.

        Not while the upper holds hard links: in a lower layer the kernel with
        index=off breaks them on copy-up, layerfs keeps them (index=on); that is
        tested on its own against the kernel with index=on."""
        for dirpath, _, files in os.walk(self.pair.layerfs.upper):
            for name in files:
                st = os.lstat(os.path.join(dirpath, name))
                if stat.S_ISREG(st.st_mode) and st.st_nlink > 1:
                    return
        self.mounts.close()
        differences = self.pair.upper_differences()
        assert not differences, "upper dirs differ:\n" + "\n".join(differences) + \
            f"\nafter: {self.pair.log}"
        self.pair.rotate()
        self.pair.log.append("commit")
        self.mounts = contextlib.ExitStack()
        self.mounts.enter_context(self.pair.mounted())

    @invariant()
    def same_merged_tree(self):
        if self.mounted:
            self.pair.check()

    def teardown(self) -> None:
        try:
            if not self.mounted:
                return
            kernel_view = treediff.snapshot(self.pair.kernel.mnt)
            layerfs_view = treediff.snapshot(self.pair.layerfs.mnt)
            self.mounts.close()
            self.mounted = False
            differences = self.pair.upper_differences()
            assert not differences, "upper dirs differ:\n" + "\n".join(differences) + \
                f"\nafter: {self.pair.log}"
            props = (*MERGED_PROPERTIES, "mtime_ns")
            reset_work(self.pair.layerfs)
            with self.pair.kernel_mounted(self.pair.layerfs) as mnt:
                swapped = treediff.diff(layerfs_view, treediff.snapshot(mnt), props)
            assert not swapped, "kernel on layerfs's upper:\n" + "\n".join(map(str, swapped)) + \
                f"\nafter: {self.pair.log}"
            with self.pair.layerfs_mounted(self.pair.kernel) as mnt:
                swapped = [d for d in treediff.diff(kernel_view, treediff.snapshot(mnt), props)
                           if not (d.property == "presence" and d.left == treediff.PHANTOM)]
            assert not swapped, "layerfs on the kernel's upper:\n" + \
                "\n".join(map(str, swapped)) + f"\nafter: {self.pair.log}"
        finally:
            self.mounts.close()
            shutil.rmtree(self.base, ignore_errors=True)


class UserxattrMachine(OverlayMachine):
    """The same with userxattr (a normal user's format): no redirects, EXDEV."""

    KERNEL_OPTIONS = ("userxattr",)
    LAYERFS_OPTIONS = ("userxattr",)


@pytest.mark.timeout(1800)
@pytest.mark.parametrize("machine", [OverlayMachine, UserxattrMachine],
                         ids=["redirect_dir=on", "userxattr"])
def test_random_operation_sequences_match_the_kernel(machine, each_engine):
    reason = kernel_overlay_available()
    if reason is not None:
        pytest.skip(f"kernel overlay comparison impossible: {reason}")
    run_state_machine_as_test(machine, settings=settings(
        max_examples=int(os.environ.get("LAYERFS_UPPER_EXAMPLES", "30")),
        stateful_step_count=int(os.environ.get("LAYERFS_UPPER_STEPS", "25")),
        deadline=None, suppress_health_check=list(HealthCheck)))
