"""The read-ahead of the layers' metadata: real du(1) processes, run and stopped."""

from __future__ import annotations

import os
import shutil

import pytest
import trio

from layerfs.prefetch import warm_layers

pytestmark = pytest.mark.skipif(shutil.which("du") is None, reason="du(1) is not installed")


def _du_children() -> dict[int, list[bytes]]:
    """Processes whose parent is this test process and that run du: their arguments."""
    found = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                argv = f.read().split(b"\0")
        except OSError:
            continue
        if int(fields[1]) == os.getpid() and argv[0].endswith(b"du"):
            found[int(entry)] = argv
    return found


def test_the_walks_end_by_themselves_and_leave_no_process(scratch):
    roots = []
    for name in ("a", "b", "c"):
        (scratch / name / "sub").mkdir(parents=True)
        (scratch / name / "sub" / "file").write_bytes(b"x")
        roots.append(str(scratch / name))
    trio.run(warm_layers, roots)
    assert _du_children() == {}


def test_cancelling_stops_the_walks_under_way(scratch):
    # Enough entries that the walks are still running when cancelled.
    for n in range(50):
        folder = scratch / "big" / f"d{n}"
        folder.mkdir(parents=True)
        for m in range(400):
            (folder / f"f{m}").touch()
    seen: dict[int, list[bytes]] = {}

    async def main() -> None:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(warm_layers, [str(scratch / "big")] * 8)
            with trio.move_on_after(10):
                while not seen:
                    seen.update(_du_children())
                    await trio.sleep(0)
            nursery.cancel_scope.cancel()
    trio.run(main)
    assert seen, "no du process was seen running"
    assert len(seen) <= 4  # a few layers at once, not all
    assert all(os.fsencode(scratch / "big") in argv for argv in seen.values())  # the layer walked
    assert _du_children() == {}
