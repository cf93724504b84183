"""Mount time of an image whose layers are already in the unpack cache.

Builds (once, kept in --work) an OCI image layout of the synthetic benchmark
image in the OCI whiteout form (``.wh.`` files; gzip layers, written with
GNU tar), unpacks it into a cache with a first ``layerfs mount``, then times,
``--runs`` times, ``layerfs mount --cache-dir CACHE LAYOUT MNT`` until the
first ``stat`` of a file deep in the image answers, unmounting between runs
(untimed). Also timed once per run: the first full ``find`` after the mount,
which reads the index's directories as it goes. Prints medians; the target of
issue 3 is a cached mount of the 200k-file image under 1 s.

    python bench/cached_mount.py [--files 200000] [--layers 5] [--runs 5] [--work DIR]
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH_DIR))

from synth import ImageParams, ensure_image  # noqa: E402

LAYERFS = [sys.executable, "-m", "layerfs"]
ENV = {**os.environ, "PYTHONPATH": str(BENCH_DIR.parent)}


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _blob(layout: Path, data: bytes) -> dict:
    digest = hashlib.sha256(data).hexdigest()
    path = layout / "blobs" / "sha256" / digest
    path.write_bytes(data)
    return {"digest": f"sha256:{digest}", "size": len(data)}


def ensure_layout(work: Path, params: ImageParams) -> Path:
    """An OCI layout of the synthetic image, built once per parameter set."""
    layout = work / f"layout-{params.key()}"
    if (layout / "index.json").exists():
        log(f"reusing layout {layout}")
        return layout
    image = ensure_image(work, params, log)
    partial = work / f"layout-{params.key()}.partial"
    shutil.rmtree(partial, ignore_errors=True)
    (partial / "blobs" / "sha256").mkdir(parents=True)
    layers, diff_ids = [], []
    for layer_dir in image.layer_dirs:
        log(f"tar {layer_dir}")
        tar = subprocess.run(["tar", "--format=pax", "--sort=name", "--numeric-owner",
                              "-C", layer_dir, "-cf", "-", "."],
                             check=True, stdout=subprocess.PIPE).stdout
        diff_ids.append("sha256:" + hashlib.sha256(tar).hexdigest())
        layers.append({"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
                       **_blob(partial, gzip.compress(tar, compresslevel=1, mtime=0))})
    config = {"architecture": "amd64", "os": "linux",
              "rootfs": {"type": "layers", "diff_ids": diff_ids}, "config": {}}
    config_desc = {"mediaType": "application/vnd.oci.image.config.v1+json",
                   **_blob(partial, json.dumps(config).encode())}
    manifest = {"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
                "config": config_desc, "layers": layers}
    manifest_desc = {"mediaType": "application/vnd.oci.image.manifest.v1+json",
                     **_blob(partial, json.dumps(manifest).encode()),
                     "annotations": {"org.opencontainers.image.ref.name": "bench"}}
    (partial / "oci-layout").write_text('{"imageLayoutVersion": "1.0.0"}')
    (partial / "index.json").write_text(json.dumps(
        {"schemaVersion": 2, "manifests": [manifest_desc]}))
    (partial / "probe").write_text(image.probe)
    partial.rename(layout)
    return layout


def _mount(layout: Path, cache: Path, mountpoint: Path) -> None:
    subprocess.run([*LAYERFS, "mount", "--quiet", "--cache-dir", str(cache), str(layout),
                    str(mountpoint)], check=True, env=ENV)


def _unmount(mountpoint: Path) -> None:
    subprocess.run([*LAYERFS, "umount", str(mountpoint)], check=True, env=ENV)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--files", type=int, default=200_000)
    parser.add_argument("--layers", type=int, default=5)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--work", default="/var/tmp/layerfs-bench")
    args = parser.parse_args()
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    params = ImageParams(files=args.files, layers=args.layers, big_size=1 << 20, native=False)
    layout = ensure_layout(work, params)
    probe = (layout / "probe").read_text()
    cache = work / f"cache-{params.key()}"
    with tempfile.TemporaryDirectory(prefix="layerfs-cached-mount-") as tmp:
        mountpoint = Path(tmp) / "mnt"
        mountpoint.mkdir()
        started = time.perf_counter()
        _mount(layout, cache, mountpoint)
        first = time.perf_counter() - started
        _unmount(mountpoint)
        log(f"first mount (unpack into the cache, if not there yet): {first:.2f} s")
        mounts, finds = [], []
        for run in range(args.runs):
            started = time.perf_counter()
            _mount(layout, cache, mountpoint)
            try:
                os.stat(mountpoint / probe)
                mounts.append(time.perf_counter() - started)
                started = time.perf_counter()
                subprocess.run(["find", str(mountpoint), "-printf", "%s %m %p\n"], check=True,
                               stdout=subprocess.DEVNULL)
                finds.append(time.perf_counter() - started)
            finally:
                _unmount(mountpoint)
            log(f"run {run + 1}: mount to first stat {mounts[-1]:.2f} s, "
                f"then find {finds[-1]:.2f} s")
    median = statistics.median(mounts)
    print(json.dumps({"files": args.files, "layers": args.layers, "runs": args.runs,
                      "mount_to_first_stat_s": mounts, "first_find_s": finds}))
    print(f"cached mount to first stat: median {median:.2f} s "
          f"({'PASS' if median < 1.0 else 'MISS'}: target < 1 s); "
          f"first find after it: median {statistics.median(finds):.2f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
