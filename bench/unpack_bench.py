"""Unpack throughput of one large gzip layer: layerfs's unpacker vs ``tar -xzf``.

Generates (once, kept in --work) a gzip layer of about 250 MB with about
50k entries (directories, small and large files, symlinks, hard links; a
mix of incompressible and compressible data), then times, interleaved,
``tar -xzf BLOB -C DIR`` and ``LayerCache.ensure`` of the same blob
(digests verified, sidecar written, atomic publication), each into a fresh
directory, and prints the medians and the ratio (tar time / layerfs time:
>= 0.8 is the target). Output trees are removed between runs, untimed.

    python bench/unpack_bench.py [--runs 5] [--entries 50000] [--work DIR]
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import io
import os
import random
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


def time_tar(blob: Path, out: Path) -> float:
    out.mkdir()
    start = time.perf_counter()
    subprocess.run(["tar", "-xzf", str(blob), "-C", str(out)], check=True)
    return time.perf_counter() - start


def time_layerfs(blob: Path, cache_dir: Path, blob_digest: str, diff_id: str) -> float:
    cache = LayerCache(cache_dir)
    layer = LayerBlob("bench", lambda: open(blob, "rb"), blob_digest=blob_digest,
                      diff_id=diff_id, size=blob.stat().st_size)
    start = time.perf_counter()
    cache.ensure(layer, None)
    elapsed = time.perf_counter() - start
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
    tar_times, ours = [], []
    for run in range(args.runs):
        for which in ("tar", "layerfs"):
            target = work / f"out-{which}"
            shutil.rmtree(target, ignore_errors=True)
            subprocess.run(["sync"], check=False)
            if which == "tar":
                tar_times.append(time_tar(blob, target))
            else:
                ours.append(time_layerfs(blob, target, blob_digest, diff_id))
            shutil.rmtree(target, ignore_errors=True)
        print(f"run {run + 1}: tar -xzf {tar_times[-1]:.2f} s, layerfs {ours[-1]:.2f} s",
              file=sys.stderr)
    tar_median, our_median = statistics.median(tar_times), statistics.median(ours)
    print(f"tar -xzf: median {tar_median:.2f} s ({blob.stat().st_size / 1e6 / tar_median:.0f} "
          f"MB/s compressed)")
    print(f"layerfs:  median {our_median:.2f} s ({blob.stat().st_size / 1e6 / our_median:.0f} "
          f"MB/s compressed)")
    print(f"ratio (tar time / layerfs time): {tar_median / our_median:.2f}x (target >= 0.8x)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
