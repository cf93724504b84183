#!/usr/bin/env python3
"""Profile the layerfs daemon under one benchmark workload.

Runs ``layerfs mount -f`` under cProfile on the benchmark image, runs the
workload (mount only, walk, read, bigfile) against it, unmounts, and prints
the top functions. The image must exist (run bench.py first with the same
--files/--layers/--big-size); run as root, e.g.:

    sudo nice /tmp/venv/bin/python bench/profile_layerfs.py walk --top 25
"""

from __future__ import annotations

import argparse
import os
import pstats
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from contenders import MountSpec, _force_unmount
from phases import READ_ALL, dd_command, find_command
from synth import ImageParams, SyntheticImage

from bench import BENCH_DIR, DEFAULT_WORKDIR, FULL, QUICK, _size

WORKLOADS = ("mount", "walk", "read", "bigfile")


def _workload(name: str, image: SyntheticImage, mountpoint: str, drop: bool) -> None:
    def drop_caches() -> None:
        if drop:
            os.sync()
            Path("/proc/sys/vm/drop_caches").write_text("3\n")

    steps = {
        "mount": [],
        "walk": [("find cold", find_command(mountpoint), None, True),
                 ("find warm", find_command(mountpoint), None, False)],
        "read": [("tar cold", READ_ALL, mountpoint, True),
                 ("tar warm", READ_ALL, mountpoint, False)],
        "bigfile": [("dd cold", dd_command(os.path.join(mountpoint, image.big_file)), None, True),
                    ("dd warm", dd_command(os.path.join(mountpoint, image.big_file)), None,
                     False)],
    }[name]
    for label, command, cwd, cold in steps:
        if cold:
            drop_caches()
        started = time.perf_counter()
        subprocess.run(command, cwd=cwd, stdout=subprocess.DEVNULL, check=True)
        print(f"{label}: {time.perf_counter() - started:.2f} s", file=sys.stderr)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("workload", choices=WORKLOADS)
    parser.add_argument("--workdir", default=DEFAULT_WORKDIR)
    parser.add_argument("--quick", action="store_true", help="the --quick image")
    parser.add_argument("--files", type=int)
    parser.add_argument("--layers", type=int)
    parser.add_argument("--big-size", type=_size)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--repo", default=str(BENCH_DIR.parent))
    parser.add_argument("--python", default=sys.executable)
    parser.add_argument("--top", type=int, default=30)
    parser.add_argument("--sort", default="tottime", help="pstats sort key (tottime, cumtime)")
    parser.add_argument("--output", help="keep the raw profile here")
    args = parser.parse_args()
    preset = QUICK if args.quick else FULL
    params = ImageParams(files=args.files or preset["files"],
                         layers=args.layers or preset["layers"],
                         big_size=args.big_size or preset["big_size"], seed=args.seed,
                         native=os.geteuid() == 0)
    root = Path(args.workdir) / f"image-{params.key()}"
    if not (root / "manifest.json").exists():
        parser.error(f"no image at {root}: run bench.py with the same parameters first")
    image = SyntheticImage.load(root)
    mount_root = Path(args.workdir) / "mnt"
    mount_root.mkdir(parents=True, exist_ok=True)
    mountpoint = tempfile.mkdtemp(prefix="profile-", dir=mount_root)
    output = args.output or os.path.join(tempfile.gettempdir(), f"layerfs-{args.workload}.prof")
    env = dict(os.environ, PYTHONPATH=args.repo)
    spec = MountSpec(list(image.layer_dirs))
    command = [args.python, "-m", "cProfile", "-o", output, "-m", "layerfs", "mount", "-f",
               "-o", f"lowerdir={spec.lowerdir()}", mountpoint]
    started = time.perf_counter()
    daemon = subprocess.Popen(command, env=env, stdin=subprocess.DEVNULL)
    try:
        probe = os.path.join(mountpoint, image.probe)
        while not os.path.exists(probe):
            if daemon.poll() is not None:
                raise SystemExit(f"layerfs exited {daemon.returncode} before mounting")
            time.sleep(0.005)
        print(f"mount to first stat: {time.perf_counter() - started:.2f} s", file=sys.stderr)
        _workload(args.workload, image, mountpoint, os.geteuid() == 0)
    finally:
        subprocess.run([args.python, "-m", "layerfs", "umount", mountpoint], env=env,
                       capture_output=True)
        try:
            daemon.wait(timeout=30)
        except subprocess.TimeoutExpired:
            _force_unmount(mountpoint)
            daemon.kill()
            daemon.wait()
        if os.path.ismount(mountpoint):
            _force_unmount(mountpoint)
        os.rmdir(mountpoint)
    stats = pstats.Stats(output)
    stats.sort_stats(args.sort).print_stats(args.top)
    return 0


if __name__ == "__main__":
    sys.exit(main())
