"""Unpack throughput of one large gzip layer: layerfs's unpacker vs ``tar -xzf``.

Generates (once, kept in --work) a gzip layer of about 250 MB with about
50k entries (directories, small and large files, symlinks, hard links; a
mix of incompressible and compressible data), then times, interleaved,
``tar -xzf BLOB -C DIR`` and ``LayerCache.ensure`` of the same blob
(digests verified, sidecar written, atomic publication), each into a fresh
directory, and prints the medians of wall and CPU time and their ratios
(tar time / layerfs time: >= 0.8 is the target). The CPU ratio is the
steadier figure on a shared machine. Output trees are removed between runs,
untimed.

    python bench/unpack_bench.py [--runs 5] [--entries 50000] [--work DIR]
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import io
import os
import random
import resource
import shutil
import statistics
import subprocess
import sys
import tarfile
import time
import zlib
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from layerfs.unpack import LayerBlob, LayerCache  # noqa: E402
from layerfs.unpack import stream as unpack_stream  # noqa: E402


def _file_size(rng: random.Random) -> int:
    roll = rng.random()
    if roll < 0.78:
        return rng.randint(0, 4096)
    if roll < 0.98:
        return rng.randint(4096, 16384)
    if roll < 0.999:
        return rng.randint(16384, 131072)
    return rng.randint(1 << 20, 8 << 20)


def generate(path: Path, entries: int, seed: int = 7) -> None:
    """A layer tar, gzip level 6 (what docker and umoci write)."""
    rng = random.Random(seed)
    noise = os.urandom(32 << 20)
    text = b"".join(b"line %d of some config or source file: key=value\n" % i
                    for i in range(400_000))
    tmp = path.with_suffix(".part")
    with open(tmp, "wb") as raw, gzip.GzipFile(fileobj=raw, mode="wb", compresslevel=6,
                                                mtime=0) as gz, \
            tarfile.open(fileobj=gz, mode="w|", format=tarfile.PAX_FORMAT) as tar:
        dirs = [""]
        files: list[str] = []
        for number in range(entries):
            roll = rng.random()
            parent = rng.choice(dirs)
            name = f"{parent}/e{number}" if parent else f"e{number}"
            info = tarfile.TarInfo(name)
            info.mtime = 1_600_000_000
            if roll < 0.08 or len(dirs) < 20:
                info.type, info.mode = tarfile.DIRTYPE, 0o755
                tar.addfile(info)
                dirs.append(name)
            elif roll < 0.11:
                info.type, info.linkname = tarfile.SYMTYPE, "../" + rng.choice(files or ["x"])
                tar.addfile(info)
            elif roll < 0.12 and files:
                info.type, info.linkname = tarfile.LNKTYPE, rng.choice(files)
                tar.addfile(info)
            else:
                size = _file_size(rng)
                if rng.random() < 0.55:
                    start = rng.randrange(len(noise) - size)
                    data = noise[start:start + size]
                else:
                    start = rng.randrange(len(text) - size) if size < len(text) else 0
                    data = (text[start:start + size] * (size // len(text) + 1))[:size]
                info.size, info.mode = len(data), rng.choice((0o644, 0o755, 0o600))
                tar.addfile(info, io.BytesIO(data))
                files.append(name)
    os.replace(tmp, path)


def _sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as source:
        while chunk := source.read(1 << 20):
            digest.update(chunk)
    return "sha256:" + digest.hexdigest()


def _diff_id(path: Path) -> str:
    digest = hashlib.sha256()
    decoder = zlib.decompressobj(16 + zlib.MAX_WBITS)
    with open(path, "rb") as source:
        while chunk := source.read(1 << 20):
            digest.update(decoder.decompress(chunk))
    return "sha256:" + digest.hexdigest()


def _cpu(who: int) -> float:
    usage = resource.getrusage(who)
    return usage.ru_utime + usage.ru_stime


def time_tar(blob: Path, out: Path) -> tuple[float, float]:
    """(wall, CPU) seconds of tar and its gzip child."""
    out.mkdir()
    cpu = _cpu(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    subprocess.run(["tar", "-xzf", str(blob), "-C", str(out)], check=True)
    return time.perf_counter() - start, _cpu(resource.RUSAGE_CHILDREN) - cpu


def time_layerfs(blob: Path, cache_dir: Path, blob_digest: str,
                 diff_id: str) -> tuple[float, float]:
    """(wall, CPU) seconds of one unpack into a fresh cache, all threads."""
    cache = LayerCache(cache_dir)
    layer = LayerBlob("bench", lambda: open(blob, "rb"), blob_digest=blob_digest,
                      diff_id=diff_id, size=blob.stat().st_size)
    cpu = _cpu(resource.RUSAGE_SELF)
    start = time.perf_counter()
    cache.ensure(layer, None)
    elapsed = time.perf_counter() - start, _cpu(resource.RUSAGE_SELF) - cpu
    for held in list(cache._held):
        held.release()
    return elapsed


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--entries", type=int, default=50_000)
    parser.add_argument("--work", default="/var/tmp/layerfs-unpack-bench")
    args = parser.parse_args()
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    blob = work / f"layer-{args.entries}.tar.gz"
    if not blob.exists():
        print(f"generating {blob} ...", file=sys.stderr)
        generate(blob, args.entries)
    blob_digest, diff_id = _sha256_file(blob), _diff_id(blob)
    print(f"blob: {blob.stat().st_size / 1e6:.0f} MB gzip, {args.entries} entries; "
          f"gzip decoder: {unpack_stream.GZIP_BACKEND}")
    tar_runs: list[tuple[float, float]] = []
    our_runs: list[tuple[float, float]] = []
    for run in range(args.runs):
        for which in ("tar", "layerfs"):
            target = work / f"out-{which}"
            shutil.rmtree(target, ignore_errors=True)
            subprocess.run(["sync"], check=False)
            if which == "tar":
                tar_runs.append(time_tar(blob, target))
            else:
                our_runs.append(time_layerfs(blob, target, blob_digest, diff_id))
            shutil.rmtree(target, ignore_errors=True)
        print(f"run {run + 1}: tar -xzf {tar_runs[-1][0]:.2f} s (cpu {tar_runs[-1][1]:.2f}), "
              f"layerfs {our_runs[-1][0]:.2f} s (cpu {our_runs[-1][1]:.2f})", file=sys.stderr)
    size_mb = blob.stat().st_size / 1e6
    medians = {}
    for label, runs in (("tar -xzf", tar_runs), ("layerfs", our_runs)):
        wall = statistics.median(r[0] for r in runs)
        cpu = statistics.median(r[1] for r in runs)
        medians[label] = (wall, cpu)
        print(f"{label + ':':10} median {wall:.2f} s wall ({size_mb / wall:.0f} MB/s compressed), "
              f"{cpu:.2f} s CPU")
    (tar_wall, tar_cpu), (our_wall, our_cpu) = medians["tar -xzf"], medians["layerfs"]
    print(f"ratio (tar time / layerfs time): {tar_wall / our_wall:.2f}x wall (target >= 0.8x), "
          f"{tar_cpu / our_cpu:.2f}x CPU")
    return 0


if __name__ == "__main__":
    sys.exit(main())
