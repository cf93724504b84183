"""Micro-benchmark of the FUSE engines alone: the native one (layerfs.fuse) against pyfuse3,
both serving the same in-memory filesystem (tests/fuse/memfs.py), as root.

    python -m bench.fuse_engine [--files 10000] [--rounds 5]

Figures per engine (medians): a GETATTR loop (attribute timeout 0, so every stat
is a request): requests/s and the daemon's CPU time per request (user+system,
from /proc: what the engine costs, whatever else the machine is doing); a cold
and a warm ``find`` over the tree; a warm one with zero-message opens (native
only: pyfuse3 cannot serve them).
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import trio

from tests.fuse.memfs import MemFS, build_tree


def serve_pyfuse3(mountpoint: str, files: int, timeout: float) -> None:
    """memfs behind pyfuse3 (a minimal read-only shim: enough for stat and find)."""
    import pyfuse3

    fs = MemFS()
    fs.timeout = timeout
    fs.add_file(1, b"hello", b"hello world\n")
    build_tree(fs, files)

    def attributes(entry) -> pyfuse3.EntryAttributes:
        a = entry.attributes
        out = pyfuse3.EntryAttributes()
        out.st_ino, out.st_mode, out.st_nlink = a.ino, a.mode, a.nlink
        out.st_uid, out.st_gid, out.st_size = a.uid, a.gid, a.size
        out.st_atime_ns, out.st_mtime_ns, out.st_ctime_ns = a.atime_ns, a.mtime_ns, a.ctime_ns
        out.entry_timeout = out.attr_timeout = timeout
        return out

    class Shim(pyfuse3.Operations):
        async def lookup(self, parent, name, ctx):
            return attributes(await fs.lookup(parent, name, ctx))

        async def getattr(self, ino, ctx):
            return attributes(await fs.getattr(ino, ctx))

        async def opendir(self, ino, ctx):
            return ino

        async def readdir(self, fh, start_id, token):
            await fs.readdir(fh, 0, start_id, True,
                             lambda name, entry, off: pyfuse3.readdir_reply(
                                 token, name, attributes(entry), off))

    pyfuse3.init(Shim(), mountpoint, {"fsname=memfs", "default_permissions", "ro"})
    try:
        trio.run(pyfuse3.main)
    finally:
        pyfuse3.close(unmount=True)


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def start(engine: str, mountpoint: str, files: int, timeout: float,
          zero_open: bool = False) -> subprocess.Popen:
    if engine == "native":
        command = [sys.executable, "-m", "tests.fuse.memfs", mountpoint, "--files", str(files),
                   "--timeout", str(timeout), "-o", "ro", *(["--zero-open"] if zero_open else [])]
    else:
        command = [sys.executable, "-m", "bench.fuse_engine", "--serve-pyfuse3", mountpoint,
                   "--files", str(files), "--timeout", str(timeout)]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL)
    deadline = time.monotonic() + 30
    while not os.path.ismount(mountpoint):
        if process.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"{engine} did not mount")
        time.sleep(0.05)
    return process


def stop(process: subprocess.Popen, mountpoint: str) -> None:
    subprocess.run(["umount", mountpoint], capture_output=True)
    process.wait(timeout=30)


def getattr_loop(engine: str, mountpoint: str, count: int) -> tuple[float, float]:
    """(requests/s, daemon CPU microseconds per request)."""
    process = start(engine, mountpoint, 0, 0.0)
    try:
        os.stat(mountpoint)
        cpu = cpu_seconds(process.pid)
        began = time.perf_counter()
        for _ in range(count):
            os.stat(mountpoint)
        elapsed = time.perf_counter() - began
        cpu = cpu_seconds(process.pid) - cpu
    finally:
        stop(process, mountpoint)
    return count / elapsed, cpu / count * 1e6


def find_times(engine: str, mountpoint: str, files: int, zero_open: bool) -> tuple[float, float]:
    process = start(engine, mountpoint, files, 300.0, zero_open)
    try:
        times = []
        for _ in range(2):
            began = time.perf_counter()
            subprocess.run(["find", mountpoint], stdout=subprocess.DEVNULL, check=True)
            times.append(time.perf_counter() - began)
    finally:
        stop(process, mountpoint)
    return times[0], times[1]


def drop_cache(path: str) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    finally:
        os.close(fd)


def read_big(mountpoint: str, backing: str, passthrough: bool) -> tuple[float, float]:
    """(cold, warm) seconds to read a file backed on disk through the mount."""
    command = [sys.executable, "-m", "tests.fuse.memfs", mountpoint, "--backed", backing,
               "-o", "ro", *(["--passthrough"] if passthrough else [])]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 30
        while not os.path.ismount(mountpoint):
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("memfs did not mount")
            time.sleep(0.05)
        drop_cache(backing)
        times = []
        for _ in range(2):
            began = time.perf_counter()
            with open(os.path.join(mountpoint, "backed"), "rb", buffering=0) as f:
                while f.read(1 << 20):
                    pass
            times.append(time.perf_counter() - began)
    finally:
        stop(process, mountpoint)
    return times[0], times[1]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--files", type=int, default=10000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--stats", type=int, default=5000)
    parser.add_argument("--serve-pyfuse3")
    parser.add_argument("--timeout", type=float, default=300.0)
    parser.add_argument("--big", type=int, default=0,
                        help="instead: read a file of this many MiB with and without passthrough")
    args = parser.parse_args()
    if args.serve_pyfuse3:
        serve_pyfuse3(args.serve_pyfuse3, args.files, args.timeout)
        return
    with tempfile.TemporaryDirectory(prefix="fuse-engine-bench-", dir="/var/tmp") as scratch:
        mnt = os.path.join(scratch, "mnt")
        os.mkdir(mnt)
        if args.big:
            backing = os.path.join(scratch, "big")
            with open(backing, "wb") as f:
                for _ in range(args.big):
                    f.write(os.urandom(1 << 20))
            print(f"{'native engine':<24} {'cold MB/s':>10} {'warm MB/s':>10}   "
                  f"({args.big} MiB, medians of {args.rounds})")
            for passthrough in (False, True):
                runs = [read_big(mnt, backing, passthrough) for _ in range(args.rounds)]
                cold = statistics.median(c for c, _ in runs)
                warm = statistics.median(w for _, w in runs)
                label = "passthrough" if passthrough else "read through the daemon"
                print(f"{label:<24} {args.big / cold:>10.0f} {args.big / warm:>10.0f}")
            return
        rows = {}
        for engine, zero_open in (("native", False), ("pyfuse3", False), ("native", True)):
            label = engine + (" zero-open" if zero_open else "")
            loops = [getattr_loop(engine, mnt, args.stats) for _ in range(args.rounds)] \
                if not zero_open else [(0.0, 0.0)]
            finds = [find_times(engine, mnt, args.files, zero_open) for _ in range(args.rounds)]
            rows[label] = (statistics.median(r for r, _ in loops),
                           statistics.median(c for _, c in loops),
                           statistics.median(c for c, _ in finds),
                           statistics.median(w for _, w in finds))
        print(f"{'engine':<20} {'getattr/s':>10} {'CPU us/req':>11} {'find cold':>10} "
              f"{'find warm':>10}   ({args.files} files, medians of {args.rounds})")
        for label, (rate, cpu, cold, warm) in rows.items():
            print(f"{label:<20} {rate:>10.0f} {cpu:>11.1f} {cold:>9.3f}s {warm:>9.3f}s")


if __name__ == "__main__":
    main()
