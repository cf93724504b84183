#!/usr/bin/env python3
"""Registry benchmark: ``layerfs pull`` against ``skopeo copy`` + unpack, and ``--lazy``.

Builds a multi-layer image with umoci, serves it from Debian's docker-registry on
127.0.0.1 (gzip, zstd:chunked and uncompressed variants), optionally behind a
throttling proxy (``--rate`` MB/s per blob request, to stand in for a network), and
prints the median of ``--runs`` runs of:

- pull (gzip): ``layerfs pull`` into an empty cache;
- skopeo copy to an OCI layout, then unpack it (umoci unpack; layerfs's unpacker);
- full pull + mount: time to the first ``ls`` of the mount;
- ``mount --lazy`` (zstd:chunked, uncompressed, gzip): time until the mount is live,
  to the first ``ls`` and to the first ``cat`` of a file, and the bytes fetched by then
  (gzip layers are pulled whole behind the live mount: ls and cat wait for them).

Run from the repository: ``PYTHONPATH=. python3 bench/registry_bench.py [--layers 4]``.
Needs root or a working fusermount3, docker-registry, skopeo, umoci.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tests.registry.images import push, umoci_image  # noqa: E402
from tests.registry.servers import FaultProxy, RegistryServer  # noqa: E402
from tests.registry.upload import decompressed_copy, upload_dir  # noqa: E402
from tests.support.mounting import force_unmount, is_mounted  # noqa: E402

PY = sys.executable
ENV = dict(os.environ, PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""))


def layer_step(number: int, files: int, big_mb: int):  # type: ignore[no-untyped-def]
    def write(root: Path) -> None:
        top = root / f"layer{number}"
        for index in range(files):
            folder = top / f"d{index // 100:03d}"
            folder.mkdir(parents=True, exist_ok=True)
            (folder / f"f{index:05d}.txt").write_bytes(
                (f"layer {number} file {index} " * 40).encode() + os.urandom(256))
        with open(top / "big.bin", "wb") as out:
            for _ in range(big_mb):
                out.write(os.urandom(1 << 20))
    return write


def timed(command: list[str]) -> float:
    started = time.monotonic()
    subprocess.run(command, check=True, env=ENV, stdout=subprocess.DEVNULL,
                   stderr=subprocess.PIPE)
    return time.monotonic() - started


def mount_until(image: str, mnt: Path, cache: Path, *extra: str,
                cat: str | None = None) -> tuple[float, float, float | None]:
    """Start ``layerfs mount -f``; seconds until the mount is live, to the first ls of
    the root, and to the first cat of ``cat`` (after the ls)."""
    mnt.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    process = subprocess.Popen([PY, "-m", "layerfs", "mount", "-f", "--quiet", "--insecure",
                                "--cache-dir", str(cache), *extra, image, str(mnt)], env=ENV,
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = started + 600
        while not is_mounted(mnt):
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"mount failed: {process.stderr.read().decode()}")
            time.sleep(0.005)
        live = time.monotonic() - started
        os.listdir(mnt)
        first_ls = time.monotonic() - started
        first_cat = None
        if cat is not None:
            (mnt / cat).read_bytes()
            first_cat = time.monotonic() - started
        return live, first_ls, first_cat
    finally:
        force_unmount(mnt)
        process.terminate()
        process.wait(timeout=30)


def fresh(base: Path, name: str) -> Path:
    path = base / name
    shutil.rmtree(path, ignore_errors=True)
    return path


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--layers", type=int, default=4)
    parser.add_argument("--files", type=int, default=2000, help="small files per layer")
    parser.add_argument("--big-mb", type=int, default=16, help="one random file per layer")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--rate", type=float, default=None,
                        help="throttle each blob request to this many MB/s")
    parser.add_argument("--jobs", type=int, default=3)
    args = parser.parse_args()
    for tool in ("docker-registry", "skopeo", "umoci"):
        if shutil.which(tool) is None:
            print(f"{tool} is not installed", file=sys.stderr)
            return 1

    work = Path(tempfile.mkdtemp(prefix="layerfs-regbench-", dir="/var/tmp"))
    try:
        layout = work / "layout"
        print(f"building {args.layers} layers x ({args.files} files + {args.big_mb} MiB)...",
              file=sys.stderr)
        umoci_image(layout, "bench", [layer_step(n, args.files, args.big_mb)
                                      for n in range(args.layers)], work)
        (work / "registry").mkdir()
        (work / "registry-gzip").mkdir()
        # two registries: skopeo reuses blobs of another compression already in a registry
        with RegistryServer(work / "registry") as registry, \
                RegistryServer(work / "registry-gzip") as gzip_registry:
            plain = decompressed_copy(layout, "bench", work / "plain")
            subprocess.run(["skopeo", "copy", "--quiet", "--dest-tls-verify=false",
                            "--dest-compress-format", "zstd:chunked", f"dir:{plain}",
                            f"docker://{registry.host}/bench/chunked:v1"], check=True)
            upload_dir(registry.host, "bench/plain", "v1", plain)
            push(layout, "bench", f"{gzip_registry.host}/bench/gzip:v1")
            rate = args.rate * 1e6 if args.rate else None
            with FaultProxy(registry.port, rate=rate) as proxy, \
                    FaultProxy(gzip_registry.port, rate=rate) as gzip_proxy:
                results = run_all(args, work, proxy, gzip_proxy)
        report(args, results)
    finally:
        for mnt in work.glob("mnt*"):
            force_unmount(mnt)
        shutil.rmtree(work, ignore_errors=True)
    return 0


def run_all(args: argparse.Namespace, work: Path, proxy: FaultProxy,
            gzip_proxy: FaultProxy) -> dict[str, list]:
    gzip_host = gzip_proxy.host
    cat = "layer0/d000/f00000.txt"
    results: dict[str, list] = {}

    def add(name: str, value: float | None) -> None:
        if value is not None:
            results.setdefault(name, []).append(value)

    def fetched(source: FaultProxy) -> int:
        return sum(r.sent for r in source.log if "/blobs/" in r.path)

    for run in range(args.runs):
        print(f"run {run + 1}/{args.runs}", file=sys.stderr)
        cache = fresh(work, "cache")
        add("layerfs pull (gzip)", timed([PY, "-m", "layerfs", "pull", "--quiet", "--insecure",
                                          "--jobs", str(args.jobs), "--cache-dir", str(cache),
                                          f"{gzip_host}/bench/gzip:v1"]))
        _, ls, _ = mount_until(f"docker://{gzip_host}/bench/gzip:v1", work / "mnt", cache)
        add("mount of the pulled image: first ls", ls)

        out = fresh(work, "oci")
        copy = timed(["skopeo", "copy", "--quiet", "--src-tls-verify=false",
                      f"docker://{gzip_host}/bench/gzip:v1", f"oci:{out}:v1"])
        add("skopeo copy to an OCI layout", copy)
        bundle = fresh(work, "bundle")
        add("skopeo copy + umoci unpack", copy + timed(
            ["umoci", "unpack", "--image", f"{out}:v1", str(bundle)]))
        cache2 = fresh(work, "cache2")
        add("skopeo copy + layerfs unpack", copy + timed(
            [PY, "-c", "import sys; from layerfs.images import open_image; "
                       "from layerfs.unpack import LayerCache; "
                       "open_image(sys.argv[1], cache=LayerCache(sys.argv[2]), quiet=True)",
             f"{out}:v1", str(cache2)]))
        shutil.rmtree(bundle, ignore_errors=True)

        def full_pull() -> None:
            cache3 = fresh(work, "cache3")
            os.sync()
            pull = timed([PY, "-m", "layerfs", "pull", "--quiet", "--insecure", "--jobs",
                          str(args.jobs), "--cache-dir", str(cache3),
                          f"{gzip_host}/bench/gzip:v1"])
            _, ls, cat_time = mount_until(f"docker://{gzip_host}/bench/gzip:v1", work / "mnt",
                                          cache3, cat=cat)
            add("full pull + mount: first ls", pull + ls)
            add("full pull + mount: first cat", pull + (cat_time or 0.0))

        def lazy(repo: str) -> None:
            cache4 = fresh(work, "cache4")
            source = gzip_proxy if repo == "gzip" else proxy
            source.log.clear()
            os.sync()
            live, ls, cat_time = mount_until(f"docker://{source.host}/bench/{repo}:v1",
                                             work / "mnt", cache4, "--lazy", "--jobs",
                                             str(args.jobs), cat=cat)
            add(f"mount --lazy ({repo}): live", live)
            add(f"mount --lazy ({repo}): first ls", ls)
            add(f"mount --lazy ({repo}): first cat", cat_time)
            add(f"mount --lazy ({repo}): MB fetched by then", fetched(source) / 1e6)

        # the full pull and the lazy mount of the same gzip image back to back, in turns
        for step in ((full_pull, lambda: lazy("gzip")) if run % 2 == 0
                     else (lambda: lazy("gzip"), full_pull)):
            step()
        lazy("chunked")
        lazy("plain")
    return results


def report(args: argparse.Namespace, results: dict[str, list]) -> None:
    rate = f", blobs throttled to {args.rate} MB/s" if args.rate else ", loopback unthrottled"
    print(f"\nimage: {args.layers} layers x ({args.files} files + {args.big_mb} MiB random)"
          f"{rate}; median of {args.runs} runs")
    width = max(len(name) for name in results)
    for name, values in results.items():
        unit = "" if "MB" in name else " s"
        print(f"  {name:<{width}}  {statistics.median(values):8.2f}{unit}")


if __name__ == "__main__":
    sys.exit(main())
