"""The read-ahead of the layers' metadata: real du(1) processes, run and stopped."""

from __future__ import annotations

import os
import shutil

import pytest
import trio

from layerfs.prefetch import warm_layers

pytestmark = pytest.mark.skipif(shutil.which("du") is None, reason="du(1) is not installed")


def _du_children() -> list[int]:
    """Processes whose parent is this test process and that run du."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                command = f.read().split(b"\0")[0]
        except OSError:
            continue
        if int(fields[1]) == os.getpid() and command.endswith(b"du"):
            found.append(int(entry))
    return found


def test_every_layer_is_walked_and_the_walks_end(scratch):
    roots = []
    for name in ("a", "b", "c"):
        (scratch / name / "sub").mkdir(parents=True)
        (scratch / name / "sub" / "file").write_bytes(b"x")
        roots.append(str(scratch / name))
    trio.run(warm_layers, roots)
    assert _du_children() == []


def test_cancelling_stops_the_walks_under_way(scratch):
    # Enough entries that the walks are still running when cancelled.
    for n in range(50):
        folder = scratch / "big" / f"d{n}"
        folder.mkdir(parents=True)
        for m in range(400):
            (folder / f"f{m}").touch()
    seen: list[int] = []

    async def main() -> None:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(warm_layers, [str(scratch / "big")] * 8)
            with trio.move_on_after(10):
                while not seen:
                    seen.extend(_du_children())
                    await trio.sleep(0)
            nursery.cancel_scope.cancel()
    trio.run(main)
    assert seen, "no du process was seen running"
    assert len(seen) <= 4  # a few layers at once, not all
    assert _du_children() == []
