"""kill -9 of the daemon in the middle of copy-ups: nothing that returned is lost,
nothing half-made shows, and the upper dir stays mountable (by layerfs and the kernel).
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import xxhash

from layerfs import treediff
from tests.support.layerspec import File, materialize_stack
from tests.support.mounting import (
    force_unmount,
    kernel_overlay_available,
    layerfs_command,
    layerfs_env,
    layerfs_mounted,
    wait_for_mount,
)

BIG = 48 << 20
SMALL_FILES = 60
KILLS = int(os.environ.get("LAYERFS_CRASH_ROUNDS", "10"))

# Appends a line to each small file in turn and copies the big files up by
# opening them for writing; prints what returned, one line each.
WRITER = r"""
import os, sys
root = sys.argv[1]
count = int(sys.argv[2])
try:
    for n in range(count):
        fd = os.open(f"{root}/big{n % 3}", os.O_WRONLY)
        os.pwrite(fd, b"X", 0)
        os.close(fd)
        print(f"big {n % 3}", flush=True)
        with open(f"{root}/small/f{n}", "ab") as f:
            f.write(b"appended\n")
        print(f"small {n}", flush=True)
except OSError:
    pass
"""


def lower_stack() -> list[dict]:
    layer = {f"small/f{n}".encode(): File(f"line {n}\n".encode()) for n in range(SMALL_FILES)}
    for n in range(3):
        layer[f"big{n}".encode()] = File(bytes([65 + n]) * 4096 * (BIG // 4096))
    return [layer, {b"other": File(b"o")}]


def digest(path: Path) -> str:
    h = xxhash.xxh3_64()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


def mount_args(lowers: list[Path], upper: Path, work: Path) -> list[str]:
    lowerdir = ":".join(str(p) for p in reversed(lowers))
    return ["-o", f"lowerdir={lowerdir},upperdir={upper},workdir={work}"]


def one_crash(lowers: list[Path], upper: Path, work: Path, mnt: Path, delay: float) -> dict:
    """Run the writer, kill -9 the daemon after ``delay`` seconds; return what returned."""
    daemon = subprocess.Popen(layerfs_command("mount", "-f", *mount_args(lowers, upper, work),
                                              str(mnt)),
                              env=layerfs_env(), stdout=subprocess.DEVNULL,
                              stderr=subprocess.PIPE, text=True)
    writer = None
    try:
        wait_for_mount(mnt, daemon)
        writer = subprocess.Popen([sys.executable, "-c", WRITER, str(mnt), str(SMALL_FILES)],
                                  stdout=subprocess.PIPE, text=True)
        time.sleep(delay)
        daemon.send_signal(signal.SIGKILL)
        daemon.wait(timeout=10)
        force_unmount(mnt)
        out, _ = writer.communicate(timeout=60)
    finally:
        if daemon.poll() is None:
            daemon.kill()
            daemon.wait()
        force_unmount(mnt)
        if writer is not None and writer.poll() is None:
            writer.kill()
            writer.wait()
        if daemon.stderr:
            daemon.stderr.close()
    returned = {"big": set(), "small": set()}
    for line in out.splitlines():
        kind, number = line.split()
        returned[kind].add(int(number))
    return returned


@pytest.mark.timeout(900)
def test_kill_9_during_copy_ups_loses_nothing_that_returned(scratch, needs_root):
    lowers = materialize_stack(lower_stack(), scratch, "native")
    mnt = scratch / "mnt"
    mnt.mkdir()
    originals = {n: digest(lowers[0] / f"big{n}") for n in range(3)}
    rng = random.Random(4)
    interrupted = 0
    for round_number in range(KILLS):
        # A fresh upper dir each round, so each kill can land in a copy-up;
        # every other round goes on from the last one's upper instead.
        if round_number % 2 == 0:
            upper, work = scratch / f"upper{round_number}", scratch / f"work{round_number}"
            upper.mkdir()
            work.mkdir()
            done_small: set[int] = set()
            done_big: set[int] = set()
        returned = one_crash(lowers, upper, work, mnt, rng.uniform(0.0, 0.6))
        done_small |= returned["small"]
        done_big |= returned["big"]
        leftovers = list(os.scandir(work / "work"))
        interrupted += bool(leftovers)
        # Offline: nothing half-made under a final name.
        for n in range(3):
            copied = upper / f"big{n}"
            if copied.exists():
                assert copied.stat().st_size == BIG
        # Remount: every returned change is there, nothing else changed.
        with layerfs_mounted(mnt, *mount_args(lowers, upper, work)):
            for n in range(SMALL_FILES):
                content = (mnt / "small" / f"f{n}").read_bytes()
                original = f"line {n}\n".encode()
                if n in done_small:
                    assert content.startswith(original + b"appended\n"), n
                else:
                    assert content.startswith(original) and \
                        set(content[len(original):].split(b"\n")) <= {b"appended", b""}, n
            for n in range(3):
                with open(mnt / f"big{n}", "rb") as f:
                    head = f.read(1)
                    assert head in (b"X", bytes([65 + n]))
                    if n in done_big:
                        assert head == b"X"
                    f.seek(1)
                    assert f.read(4096) == bytes([65 + n]) * 4096
                assert (mnt / f"big{n}").stat().st_size == BIG
            layerfs_view = treediff.snapshot(mnt)
        assert not list(os.scandir(work / "work")), "the mount cleared the work dir"
        if kernel_overlay_available() is None:
            kernel_mnt = scratch / "kernel"
            kernel_mnt.mkdir(exist_ok=True)
            options = mount_args(lowers, upper, work)[1]
            subprocess.run(["mount", "-t", "overlay", "overlay", "-o", options, str(kernel_mnt)],
                           check=True, capture_output=True)
            try:
                kernel_view = treediff.snapshot(kernel_mnt)
            finally:
                force_unmount(kernel_mnt)
            differences = treediff.diff(kernel_view, layerfs_view)
            assert not differences, "\n".join(map(str, differences))
    for n in range(3):
        assert digest(lowers[0] / f"big{n}") == originals[n], "a lower layer was written"
    print(f"{KILLS} kills, {interrupted} left a copy-up half-done in the work dir")
