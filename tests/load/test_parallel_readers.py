"""Many readers at once: right bytes every time, no hung request, no memory growth."""

from __future__ import annotations

import os
import random
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import xxhash

from tests.support.layerspec import File, Whiteout, materialize_stack
from tests.support.mounting import layerfs_mounted

READERS = 16
SECONDS = float(os.environ.get("LAYERFS_LOAD_SECONDS", "6"))
# A request taking this long is hung, not slow.
HANG_BOUND = 30.0


def make_stack(seed: int = 7) -> tuple[list[dict], dict[str, str]]:
    rng = random.Random(seed)
    layers: list[dict] = [{}, {}, {}]
    for n in range(1500):
        size = rng.choice([0, 10, 4096, 70_000]) if n % 50 else 1 << 20
        path = f"d{n % 37}/s{n % 5}/f{n}".encode()
        layers[rng.randrange(3)][path] = File(rng.randbytes(size))
    for path in list(layers[0])[::10]:
        layers[2][path] = Whiteout()
    expected: dict[str, str] = {}
    for layer in layers:
        for path, item in layer.items():
            if isinstance(item, Whiteout):
                expected.pop(path.decode(), None)
            else:
                expected[path.decode()] = xxhash.xxh3_64_hexdigest(item.content)
    return layers, expected


def reader(mountpoint: str, expected: dict[str, str], seed: int,
           seconds: float) -> tuple[int, float, list[str]]:
    rng = random.Random(seed)
    names = sorted(expected)
    deadline = time.monotonic() + seconds
    done, worst, wrong = 0, 0.0, []
    while time.monotonic() < deadline:
        name = rng.choice(names)
        start = time.monotonic()
        path = os.path.join(mountpoint, name)
        os.stat(path)
        with open(path, "rb") as f:
            data = f.read()
        worst = max(worst, time.monotonic() - start)
        if xxhash.xxh3_64_hexdigest(data) != expected[name]:
            wrong.append(name)
        done += 1
    return done, worst, wrong


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


def test_parallel_readers_get_the_right_bytes_without_hangs_or_growth(scratch):
    layers, expected = make_stack()
    dirs = materialize_stack(layers, scratch, "oci")
    mountpoint = scratch / "mnt"
    mountpoint.mkdir()
    args = [arg for d in dirs for arg in ("--layer", str(d))]
    with layerfs_mounted(mountpoint, *args) as daemon:
        # Warm up: every file once, so caches and thread pools reach their size.
        reader(str(mountpoint), expected, 0, 1.0)
        before = rss_kib(daemon.pid)
        with ProcessPoolExecutor(READERS) as pool:
            results = list(pool.map(reader, [str(mountpoint)] * READERS, [expected] * READERS,
                                    range(1, READERS + 1), [SECONDS] * READERS,
                                    timeout=SECONDS + HANG_BOUND * 2))
        after = rss_kib(daemon.pid)
        assert daemon.poll() is None
    assert all(not wrong for _, _, wrong in results), [w for _, _, w in results if w]
    assert sum(done for done, _, _ in results) > READERS
    assert max(worst for _, worst, _ in results) < HANG_BOUND
    # Memory must not grow with the number of requests served.
    assert after - before < 32 * 1024, f"daemon RSS grew from {before} KiB to {after} KiB"
