#!/usr/bin/env python3
"""Benchmark writes through an upper dir: layerfs, the kernel overlay, fuse-overlayfs.

Each measurement mounts a contender afresh over the same lower layers with a
new, empty upper and work dir (removed afterwards), so every copy-up really
copies. Prints medians of ``--runs`` runs and layerfs's ratio to each
baseline, with issue 4's target (within 2x of fuse-overlayfs). Run as root:

    sudo nice /tmp/venv/bin/python bench/upper_bench.py --quick
    sudo nice /tmp/venv/bin/python bench/upper_bench.py --json /tmp/upper.json

Measured (page cache warm; the kernel overlay copies with copy_file_range too):

- copy-up of one big lower file: ``open(O_WRONLY)`` until it returns;
- copy-up of many small lower files: ``open(O_WRONLY)`` + ``close`` of each;
- create + write + close of many new small files (4 KiB) in new dirs;
- ``dd`` of a new big file from /dev/zero, without and with ``conv=fsync``.

``layerfs-volatile`` is layerfs with ``-o volatile``: like fuse-overlayfs it
does not fsync a copy-up before renaming it into place (the kernel and layerfs
by default do, so that a power cut cannot leave a short copy).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

from contenders import FuseOverlayfs, KernelOverlay, Layerfs, MountSpec, Unavailable, mounted


class LayerfsVolatile(Layerfs):
    """layerfs without syncs (``-o volatile``): copy-ups are not fsynced before
    they are renamed into place, as fuse-overlayfs never does; the kernel and
    layerfs by default do."""

    def __init__(self, repo: str, python: str) -> None:
        # Named by its options ("layerfs-volatile"): a name of its own keeps its
        # figures apart from layerfs's.
        super().__init__(repo, python, options="volatile")

BENCH_DIR = Path(__file__).resolve().parent
DEFAULT_WORKDIR = "/var/tmp/layerfs-upper-bench"
FULL = {"big": 1 << 30, "small": 10_000, "dd": 1 << 30, "runs": 5}
QUICK = {"big": 256 << 20, "small": 2_000, "dd": 256 << 20, "runs": 3}
CHUNK = 1 << 20
SMALL_SIZE = 4096
TARGET_FACTOR = 2.0

METRICS = [
    ("copyup_big_s", "copy-up of the big file (open O_WRONLY)", "s", False),
    ("copyup_small_s", "copy-up of the small files (open O_WRONLY + close)", "s", False),
    ("create_small_s", "create+write+close of small files", "s", False),
    ("dd_write_mbps", "dd bs=1M of a new file", "MB/s", True),
    ("dd_fsync_mbps", "dd bs=1M conv=fsync of a new file", "MB/s", True),
]


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def ensure_lowers(workdir: Path, big: int, small: int) -> list[str]:
    """Two lower layers: the big file and the small files (bottom), a few more (top)."""
    base = workdir / f"lowers-{big}-{small}"
    bottom, top = base / "0", base / "1"
    done = base / ".done"
    if done.exists():
        return [str(bottom), str(top)]
    shutil.rmtree(base, ignore_errors=True)
    (bottom / "small").mkdir(parents=True)
    top.mkdir(parents=True)
    log(f"writing lower layers under {base} ...")
    block = os.urandom(CHUNK)
    with open(bottom / "big", "wb") as f:
        for _ in range(big // CHUNK):
            f.write(block)
    data = os.urandom(SMALL_SIZE)
    for n in range(small):
        folder = bottom / "small" / f"d{n % 100:02d}"
        folder.mkdir(exist_ok=True)
        (folder / f"f{n}").write_bytes(data)
    (top / "probe").write_bytes(b"probe")
    done.write_text("")
    return [str(bottom), str(top)]


class Fresh:
    """A new upper and work dir per measurement."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.number = 0

    def spec(self, lowers: list[str]) -> MountSpec:
        self.number += 1
        root = self.workdir / "uppers" / str(self.number)
        shutil.rmtree(root, ignore_errors=True)
        (root / "upper").mkdir(parents=True)
        (root / "work").mkdir()
        return MountSpec(lowers, str(root / "upper"), str(root / "work"))

    def clear(self, spec: MountSpec) -> None:
        assert spec.upper is not None
        shutil.rmtree(Path(spec.upper).parent, ignore_errors=True)


def copyup_big(root: str, sizes: dict) -> float:
    started = time.perf_counter()
    fd = os.open(os.path.join(root, "big"), os.O_WRONLY)
    elapsed = time.perf_counter() - started
    os.close(fd)
    if os.stat(os.path.join(root, "big")).st_size != sizes["big"]:
        raise RuntimeError("the copied-up file has the wrong size")
    return elapsed


def copyup_small(root: str, sizes: dict) -> float:
    paths = [os.path.join(root, "small", f"d{n % 100:02d}", f"f{n}") for n in range(sizes["small"])]
    started = time.perf_counter()
    for path in paths:
        os.close(os.open(path, os.O_WRONLY))
    return time.perf_counter() - started


def create_small(root: str, sizes: dict) -> float:
    data = b"x" * SMALL_SIZE
    started = time.perf_counter()
    for folder in range(100):
        os.mkdir(os.path.join(root, f"new{folder}"))
    for n in range(sizes["small"]):
        fd = os.open(os.path.join(root, f"new{n % 100}", f"f{n}"),
                     os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        os.write(fd, data)
        os.close(fd)
    return time.perf_counter() - started


def _dd(root: str, sizes: dict, fsync: bool) -> float:
    command = ["dd", "if=/dev/zero", f"of={os.path.join(root, 'ddout')}", "bs=1M",
               f"count={sizes['dd'] // CHUNK}", "status=none"] + (["conv=fsync"] if fsync else [])
    started = time.perf_counter()
    subprocess.run(command, check=True)
    return sizes["dd"] / 1e6 / (time.perf_counter() - started)


PHASES = {
    "copyup_big_s": copyup_big,
    "copyup_small_s": copyup_small,
    "create_small_s": create_small,
    "dd_write_mbps": lambda root, sizes: _dd(root, sizes, False),
    "dd_fsync_mbps": lambda root, sizes: _dd(root, sizes, True),
}


def run(args: argparse.Namespace) -> int:
    preset = QUICK if args.quick else FULL
    sizes = {key: getattr(args, key) or preset[key] for key in ("big", "small", "dd")}
    runs = args.runs or preset["runs"]
    workdir = Path(args.workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    lowers = ensure_lowers(workdir, sizes["big"], sizes["small"])
    contenders = []
    for contender in (Layerfs(str(BENCH_DIR.parent), args.python),
                      LayerfsVolatile(str(BENCH_DIR.parent), args.python), KernelOverlay(),
                      FuseOverlayfs()):
        try:
            contender.check()
            contenders.append(contender)
        except Unavailable as exc:
            log(f"skipping {contender.name}: {exc}")
    fresh = Fresh(workdir)
    results: dict[str, dict[str, list[float]]] = {}
    for number in range(runs):
        # A different contender goes first in each run: none always follows
        # the same neighbour's clean-up.
        order = contenders[number % len(contenders):] + contenders[:number % len(contenders)]
        for key, phase in PHASES.items():
            for contender in order:
                spec = fresh.spec(lowers)
                os.sync()  # no writeback of an earlier measurement's data in this one
                try:
                    with mounted(contender, spec, workdir / "mnt", "probe") as mount:
                        value = phase(mount.path, sizes)
                finally:
                    fresh.clear(spec)
                    os.sync()
                results.setdefault(key, {}).setdefault(contender.name, []).append(value)
                log(f"run {number + 1}/{runs} {key} {contender.name}: {value:.3f}")
    medians = {key: {name: statistics.median(values) for name, values in by.items()}
               for key, by in results.items()}
    print(f"\nupper dir benchmark: big file {sizes['big'] >> 20} MiB, {sizes['small']} small "
          f"files, dd {sizes['dd'] >> 20} MiB, median of {runs} runs\n")
    names = [c.name for c in contenders]
    print(f"{'metric':52} " + " ".join(f"{n:>16}" for n in names)
          + "  layerfs/fuse-overlayfs  target")
    for key, label, unit, higher in METRICS:
        row = medians.get(key, {})
        cells = " ".join(f"{row.get(n, float('nan')):>16.3f}" for n in names)
        verdict, ratio_text = "n/a", ""
        if "layerfs" in row and "fuse-overlayfs" in row:
            ratio = row["layerfs"] / row["fuse-overlayfs"]
            ratio_text = f"{ratio:.2f}x"
            ok = ratio >= 1 / TARGET_FACTOR if higher else ratio <= TARGET_FACTOR
            verdict = "PASS" if ok else "MISS"
        print(f"{label + ' (' + unit + ')':52} {cells}  {ratio_text:>22}  {verdict}")
    if args.json:
        Path(args.json).write_text(json.dumps({"sizes": sizes, "runs": runs, "results": results,
                                               "medians": medians}, indent=2))
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", default=DEFAULT_WORKDIR)
    parser.add_argument("--quick", action="store_true", help="smaller files, 3 runs")
    parser.add_argument("--runs", type=int)
    parser.add_argument("--big", type=int, help="bytes of the big lower file")
    parser.add_argument("--small", type=int, help="number of small files")
    parser.add_argument("--dd", type=int, help="bytes written by dd")
    parser.add_argument("--python", default=sys.executable,
                        help="interpreter that runs layerfs (needs pyfuse3, trio)")
    parser.add_argument("--json", help="write the raw results here")
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
