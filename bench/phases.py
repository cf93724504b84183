"""What is measured: metrics and the phases that produce them.

A phase mounts a contender afresh (via :meth:`Bench.mount`), measures one
thing and returns ``{metric key: value}``. To add a measurement, write a
phase function, list its metrics in :data:`METRICS` and the phase in
:data:`PHASES`; targets live in :mod:`report`.

"Cold" means: the page, dentry and inode caches dropped (``echo 3 >
/proc/sys/vm/drop_caches``) and a fresh mount; "warm" is the same operation
timed on the same mount right after one untimed warm pass (:func:`timed_warm`):
this VM's DAMON pages out what was not touched for about a minute, so a cold
pass longer than that (a slow contender's) is no warm-up for its own start.
"Data cold" (phase ``readdata``): the
tree walked once, then the page cache alone dropped (``echo 1``), so the
files' data must come from the disk while their metadata is cached -- a tar
or cp of an image already browsed.
"""

from __future__ import annotations

import contextlib
import os
import statistics
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator

from contenders import Contender, Mounted, MountSpec, mounted
from synth import SyntheticImage


@dataclass(frozen=True)
class Metric:
    key: str
    label: str
    unit: str
    higher_is_better: bool = False
    digits: int = 2


METRICS = [
    Metric("mount_cold_s", "mount to first stat, cold", "s"),
    Metric("mount_warm_s", "mount to first stat, warm", "s"),
    Metric("find_cold_s", "find -printf '%s %m %p', cold", "s"),
    Metric("find_warm_s", "find -printf '%s %m %p', warm", "s"),
    Metric("ls_cold_s", "ls -laR, cold", "s"),
    Metric("ls_warm_s", "ls -laR, warm", "s"),
    Metric("read_all_cold_s", "read every file (tar | cat), cold", "s"),
    Metric("read_all_warm_s", "read every file (tar | cat), warm", "s"),
    Metric("read_data_cold_s", "read every file, data cold (metadata cached)", "s"),
    Metric("dd_cold_mbps", "dd big file bs=1M, cold", "MB/s", higher_is_better=True, digits=0),
    Metric("dd_warm_mbps", "dd big file bs=1M, warm (median of 5 in a row)", "MB/s",
           higher_is_better=True, digits=0),
    Metric("rss_peak_mb", "daemon peak RSS (VmHWM)", "MB", digits=1),
    Metric("entries", "entries listed by find", "", higher_is_better=True, digits=0),
]
METRIC_BY_KEY = {metric.key: metric for metric in METRICS}


@dataclass
class Bench:
    """What phases need: the image, where to mount, how to make caches cold."""

    image: SyntheticImage
    mount_root: Path
    scratch: Path
    can_drop_caches: bool
    log: Callable[[str], None] = print
    listings: dict[str, set[str]] = field(default_factory=dict)
    """The first full listing seen per contender, for the consistency check."""
    rss_kib: list[int] = field(default_factory=list)
    """Peak RSS of every daemon of the current run."""

    def spec(self) -> MountSpec:
        return MountSpec(list(self.image.layer_dirs))

    @contextlib.contextmanager
    def mount(self, contender: Contender) -> Iterator[Mounted]:
        with mounted(contender, self.spec(), self.mount_root, self.image.probe) as mount:
            try:
                yield mount
            finally:
                rss = mount.read_peak_rss()
                if rss is not None:
                    self.rss_kib.append(rss)

    def drop_caches(self, what: int = 3) -> None:
        """Drop the page cache (1), dentries and inodes (2) or both (3)."""
        if not self.can_drop_caches:
            return
        os.sync()
        with open("/proc/sys/vm/drop_caches", "w") as control:
            control.write(f"{what}\n")


def timed(command: list[str], *, cwd: str | None = None) -> float:
    """Seconds to run ``command`` with output discarded; raise if it fails."""
    started = time.perf_counter()
    result = subprocess.run(command, cwd=cwd, stdin=subprocess.DEVNULL,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    elapsed = time.perf_counter() - started
    if result.returncode != 0:
        message = result.stderr.decode(errors="replace").strip().splitlines()
        raise RuntimeError(f"{command[0]} exited {result.returncode}: "
                           f"{message[-1] if message else 'no message'}")
    return elapsed


def timed_warm(command: list[str], *, cwd: str | None = None, repeats: int = 1) -> float:
    """``command`` timed right after an untimed run of it: the warm figure.

    With ``repeats`` > 1, the median of that many timed runs in a row: for a
    figure of a fraction of a second (a warm dd) one run measures the
    scheduler as much as the copy."""
    timed(command, cwd=cwd)
    return statistics.median(timed(command, cwd=cwd) for _ in range(repeats))


def find_command(root: str) -> list[str]:
    return ["find", root, "-printf", "%s %m %p\n"]


LS_LAR = ["ls", "-laR", "."]

# tar to a pipe: GNU tar skips reading file data when its output is /dev/null.
READ_ALL = ["bash", "-c", "set -o pipefail; tar -cf - . | cat > /dev/null"]


WARM_DD_REPEATS = 5
"""A warm dd of the big file lasts 0.1-0.3 s: its figure is the median of 5."""


def dd_command(path: str) -> list[str]:
    return ["dd", f"if={path}", "of=/dev/null", "bs=1M", "status=none"]


# -- phases -----------------------------------------------------------------------

def phase_mount(bench: Bench, contender: Contender) -> dict[str, float]:
    bench.drop_caches()
    with bench.mount(contender) as mount:
        cold = mount.mount_seconds
    with bench.mount(contender) as mount:
        warm = mount.mount_seconds
    return {"mount_cold_s": cold, "mount_warm_s": warm}


def phase_walk(bench: Bench, contender: Contender) -> dict[str, float]:
    with bench.mount(contender) as mount:
        bench.drop_caches()
        cold = timed(find_command(mount.path))
        warm = timed_warm(find_command(mount.path))
        result = {"find_cold_s": cold, "find_warm_s": warm}
        if contender.name not in bench.listings:
            listing = _listing(mount.path)
            bench.listings[contender.name] = listing
            result["entries"] = len(listing)
    return result


def phase_list(bench: Bench, contender: Contender) -> dict[str, float]:
    """``ls -laR``: every entry's attributes, and the xattrs ls asks for (ACLs, SELinux)."""
    with bench.mount(contender) as mount:
        bench.drop_caches()
        cold = timed(LS_LAR, cwd=mount.path)
        warm = timed_warm(LS_LAR, cwd=mount.path)
    return {"ls_cold_s": cold, "ls_warm_s": warm}


def _listing(root: str) -> set[str]:
    """Type, mode, size (not for directories) and path of every entry, untimed."""
    output = subprocess.run(["find", ".", "-printf", "%y %m %s %p\\0"], cwd=root,
                            stdout=subprocess.PIPE, check=True).stdout
    entries = set()
    for line in output.decode(errors="surrogateescape").split("\0"):
        if not line:
            continue
        kind, mode, size, path = line.split(" ", 3)
        entries.add(f"{kind} {mode} {'-' if kind == 'd' else size} {path}")
    return entries


def phase_read_all(bench: Bench, contender: Contender) -> dict[str, float]:
    with bench.mount(contender) as mount:
        bench.drop_caches()
        cold = timed(READ_ALL, cwd=mount.path)
        warm = timed_warm(READ_ALL, cwd=mount.path)
    return {"read_all_cold_s": cold, "read_all_warm_s": warm}


def phase_read_data(bench: Bench, contender: Contender) -> dict[str, float]:
    with bench.mount(contender) as mount:
        timed(find_command(mount.path))
        bench.drop_caches(1)
        cold = timed(READ_ALL, cwd=mount.path)
    return {"read_data_cold_s": cold}


def phase_bigfile(bench: Bench, contender: Contender) -> dict[str, float]:
    size_mb = bench.image.params.big_size / 1e6
    with bench.mount(contender) as mount:
        path = os.path.join(mount.path, bench.image.big_file)
        bench.drop_caches()
        cold = timed(dd_command(path))
        warm = timed_warm(dd_command(path), repeats=WARM_DD_REPEATS)
    return {"dd_cold_mbps": size_mb / cold, "dd_warm_mbps": size_mb / warm}


@dataclass(frozen=True)
class Phase:
    name: str
    run: Callable[[Bench, Contender], dict[str, float]]
    description: str


PHASES = [
    Phase("mount", phase_mount, "mount time, cold then warm caches"),
    Phase("walk", phase_walk, "find over the whole tree, cold then warm"),
    Phase("list", phase_list, "ls -laR over the whole tree, cold then warm"),
    Phase("read", phase_read_all, "read every file through tar | cat, cold then warm"),
    Phase("readdata", phase_read_data, "read every file through tar | cat, data cold, "
                                       "metadata cached (a find first)"),
    Phase("bigfile", phase_bigfile, "dd the big file, cold then warm"),
]
PHASE_BY_NAME = {phase.name: phase for phase in PHASES}
