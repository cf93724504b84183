"""Many writers at once on an upper dir: every write is there (also after a
remount, and as the kernel overlay shows the upper dir), no request hangs, and
the daemon's memory does not grow with the requests it serves.

Each writer process owns a fixed pool of names -- in its own dir and in dirs
all writers share, some of them lower files -- and for a bounded time creates,
writes, appends, truncates, renames and unlinks among them, remembering what
each name holds. Two identical rounds run; the tree's size stays bounded by
the pools, so the daemon's RSS after the second round may not exceed the RSS
after the first by more than a bound.
"""

from __future__ import annotations

import multiprocessing
import os
import queue
import random
import subprocess
import time
from pathlib import Path

import xxhash

from layerfs import treediff
from tests.load.test_parallel_readers import HANG_BOUND, rss_kib
from tests.support.layerspec import File, materialize_stack
from tests.support.mounting import (
    force_unmount,
    kernel_overlay_available,
    layerfs_mounted,
)

WRITERS = 8
SECONDS = float(os.environ.get("LAYERFS_LOAD_SECONDS", "10"))
SHARED_DIRS = 3
OWN_NAMES = 24
SHARED_NAMES = 8  # per writer and shared dir
LOWER_EVERY = 3  # every third name of a pool starts as a lower file
RSS_GROWTH_BOUND_KIB = 8 * 1024

State = dict[str, bytes]


def pool(writer: int) -> list[str]:
    names = [f"w{writer}/f{n}" for n in range(OWN_NAMES)]
    names += [f"s{d}/w{writer}-f{n}" for d in range(SHARED_DIRS) for n in range(SHARED_NAMES)]
    return names


def initial_state() -> tuple[list[dict], list[State]]:
    """The lower layers (two) and what each writer's names hold at the start."""
    rng = random.Random(11)
    layers: list[dict] = [{}, {}]
    states: list[State] = []
    for writer in range(WRITERS):
        state: State = {}
        for position, name in enumerate(pool(writer)):
            if position % LOWER_EVERY == 0:
                data = rng.randbytes(rng.choice([0, 100, 5000, 70_000]))
                layers[position % 2][name.encode()] = File(data)
                state[name] = data
        states.append(state)
    # The writers' own dirs exist below too, some of them empty of their names.
    for writer in range(WRITERS):
        layers[0][f"w{writer}/lower-only".encode()] = File(b"kept")
    return layers, states


def _timed(worst: list[float], action, *args):
    start = time.monotonic()
    try:
        return action(*args)
    finally:
        worst[0] = max(worst[0], time.monotonic() - start)


def _write_all(path: str, flags: int, data: bytes) -> None:
    fd = os.open(path, flags, 0o644)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
    finally:
        os.close(fd)


def writer(mountpoint: str, number: int, state: State, seed: int, seconds: float,
           results: multiprocessing.Queue) -> None:
    """Operate on this writer's pool until the time is up; put (state, ops, worst)."""
    rng = random.Random(seed)
    names = pool(number)
    worst = [0.0]
    done = 0
    deadline = time.monotonic() + seconds
    try:
        while time.monotonic() < deadline:
            name = rng.choice(names)
            path = os.path.join(mountpoint, name)
            data = rng.randbytes(rng.choice([1, 100, 4096, 20_000]))
            if name not in state:
                _timed(worst, _write_all, path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, data)
                state[name] = data
                done += 1
                continue
            op = rng.randrange(6)
            if op == 0:
                _timed(worst, _write_all, path, os.O_WRONLY | os.O_APPEND, data)
                state[name] += data
            elif op == 1:
                _timed(worst, _write_all, path, os.O_WRONLY | os.O_TRUNC, data)
                state[name] = data
            elif op == 2:
                # Overwrite in the middle (copy-up keeps the rest).
                offset = rng.randrange(len(state[name]) + 1)
                fd = _timed(worst, os.open, path, os.O_WRONLY)
                try:
                    _timed(worst, os.pwrite, fd, data, offset)
                finally:
                    os.close(fd)
                old = state[name]
                state[name] = old[:offset] + data + old[offset + len(data):]
            elif op == 3:
                target = rng.choice(names)
                _timed(worst, os.rename, path, os.path.join(mountpoint, target))
                state[target] = state.pop(name)
            elif op == 4:
                _timed(worst, os.unlink, path)
                del state[name]
            else:
                with open(path, "rb") as f:
                    seen = _timed(worst, f.read)
                if seen != state[name]:
                    raise AssertionError(f"{name}: read {len(seen)} bytes, not what was written")
            done += 1
        results.put((number, state, done, worst[0], None))
    except BaseException as exc:  # noqa: BLE001 - reported to the test, which fails
        results.put((number, state, done, worst[0], f"{type(exc).__name__}: {exc}"))


def run_round(mountpoint: Path, states: list[State], seed: int) -> tuple[list[State], int]:
    """All writers at once; a watchdog kills them if the round overruns by HANG_BOUND."""
    context = multiprocessing.get_context("fork")
    results: multiprocessing.Queue = context.Queue()
    workers = [context.Process(target=writer,
                               args=(str(mountpoint), n, dict(states[n]), seed * 100 + n,
                                     SECONDS, results))
               for n in range(WRITERS)]
    for worker in workers:
        worker.start()
    collected = {}
    deadline = time.monotonic() + SECONDS + HANG_BOUND
    try:
        while len(collected) < WRITERS:
            left = deadline - time.monotonic()
            try:
                number, state, done, worst, error = results.get(timeout=max(left, 0.1))
            except queue.Empty:
                raise AssertionError(
                    f"writers {sorted(set(range(WRITERS)) - collected.keys())} hung: no "
                    f"answer {HANG_BOUND:.0f} s after the round's end") from None
            collected[number] = (state, done, worst, error)
    finally:
        for worker in workers:
            if worker.is_alive():
                worker.kill()
            worker.join()
    errors = [f"writer {n}: {e}" for n, (_, _, _, e) in sorted(collected.items()) if e]
    assert not errors, errors
    worst = max(w for _, _, w, _ in collected.values())
    assert worst < HANG_BOUND, f"a request took {worst:.1f} s"
    return [collected[n][0] for n in range(WRITERS)], sum(d for _, d, _, _ in collected.values())


def check_tree(root: Path, states: list[State]) -> None:
    """Every name holds what its writer last wrote; no name is there that should not be."""
    expected = {name: xxhash.xxh3_64_hexdigest(data)
                for state in states for name, data in state.items()}
    wrong = []
    for name, digest in sorted(expected.items()):
        try:
            data = (root / name).read_bytes()
        except OSError as exc:
            wrong.append(f"{name}: {exc.strerror}")
            continue
        if xxhash.xxh3_64_hexdigest(data) != digest:
            wrong.append(f"{name}: wrong content ({len(data)} bytes)")
    present = {f"{d}/{n}" for d in [*(f"w{w}" for w in range(WRITERS)),
                                   *(f"s{s}" for s in range(SHARED_DIRS))]
               for n in os.listdir(root / d) if n != "lower-only"}
    wrong += [f"{name}: there but removed" for name in sorted(present - expected.keys())]
    assert not wrong, wrong[:20]


def test_parallel_writers_lose_nothing_and_do_not_grow(scratch):
    layers, states = initial_state()
    lowers = materialize_stack(layers, scratch, "oci")
    upper, work, mountpoint = scratch / "upper", scratch / "work", scratch / "mnt"
    for path in (upper, work, mountpoint):
        path.mkdir()
    args = [arg for d in lowers for arg in ("--layer", str(d))]
    args += ["--upper", str(upper), "--work", str(work)]

    with layerfs_mounted(mountpoint, *args) as daemon:
        states, first = run_round(mountpoint, states, seed=1)
        check_tree(mountpoint, states)
        before = rss_kib(daemon.pid)
        states, second = run_round(mountpoint, states, seed=2)
        check_tree(mountpoint, states)
        after = rss_kib(daemon.pid)
        assert daemon.poll() is None
    assert first > WRITERS and second > WRITERS
    # Memory must not grow with the number of requests served.
    assert after - before < RSS_GROWTH_BOUND_KIB, \
        f"daemon RSS grew from {before} KiB to {after} KiB over {second} operations"

    with layerfs_mounted(mountpoint, *args):
        check_tree(mountpoint, states)
        remounted = treediff.snapshot(mountpoint)
    if kernel_overlay_available() is None:
        lowerdir = ":".join(str(d) for d in reversed(lowers))
        kernel_mnt = scratch / "kernel"
        kernel_mnt.mkdir()
        subprocess.run(["mount", "-t", "overlay", "overlay", "-o",
                        f"lowerdir={lowerdir},upperdir={upper},workdir={work}",
                        str(kernel_mnt)], check=True, capture_output=True)
        try:
            check_tree(kernel_mnt, states)
            shown = treediff.snapshot(kernel_mnt)
        finally:
            force_unmount(kernel_mnt)
        differences = treediff.diff(shown, remounted,
                                    ("type", "mode", "uid", "gid", "size", "content", "target"))
        assert not differences, [str(d) for d in differences[:20]]
