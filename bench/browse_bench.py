"""How fast ``layerfs browse`` opens and answers on a big image: the synthetic image of
bench/synth.py (200k files in 5 layers by default), driven headless through textual's
pilot, against ``layerfs which`` on the same image.

    nice .venv/bin/python bench/browse_bench.py [--files 200000] [--workdir DIR]

Prints one line per figure (seconds unless said); nothing is asserted. The page cache is
warm (the generator just wrote the image, or an earlier run read it).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from synth import PROBE_PATH, ImageParams, ensure_image  # noqa: E402

from layerfs.browse import model  # noqa: E402
from layerfs.browse.app import BrowseApp, LayerTable  # noqa: E402
from layerfs.browse.tree import FileTree  # noqa: E402
from layerfs.explore.provenance import Explainer  # noqa: E402
from layerfs.images.layerdirs import open_explicit_layers  # noqa: E402
from layerfs.index import PathIndex  # noqa: E402

REPO = Path(__file__).resolve().parents[1]


def _figure(name: str, value: float, unit: str = "s") -> None:
    print(f"{name:<58} {value:>9.3f} {unit}" if unit == "s" else f"{name:<58} {value:>9} {unit}",
          flush=True)


async def _until(pilot, ready) -> None:
    while not ready():
        await pilot.pause(0.005)


async def _browse(layer_dirs: list[str]) -> None:
    image = open_explicit_layers(layer_dirs)
    started = time.monotonic()
    app = BrowseApp([(image, "synthetic")])
    async with app.run_test(size=(160, 48)) as pilot:
        tree = app.query_one(FileTree)
        await _until(pilot, lambda: tree.model is not None and tree.model.rows)
        _figure("browse: first screen (layers, tree root)", time.monotonic() - started)
        await _until(pilot, lambda: app.marks_ready)
        _figure("browse: top layer's marks shown", time.monotonic() - started)

        # Keys on the tree: the cursor, a directory opened and closed.
        tree.focus()
        began = time.monotonic()
        for _ in range(50):
            await pilot.press("down")
        _figure("browse: one cursor move (j), mean of 50", (time.monotonic() - began) / 50)
        top = app.rows.tree
        biggest = max((node for _, node in top.walk() if node.is_dir and node.parent is not None
                       and node.parent.parent is None), key=lambda n: len(n.children or {}))
        number = app.rows.find(biggest.path())
        tree.refresh_rows(biggest.path())
        await pilot.pause()
        app.rows.collapse(number)
        began = time.monotonic()
        await pilot.press("space")
        _figure(f"browse: expand /{os.fsdecode(biggest.path())} ({len(biggest.children)} "
                "names)", time.monotonic() - began)
        began = time.monotonic()
        for _ in range(50):
            await pilot.press("down")
        _figure("browse: cursor move inside it, mean of 50", (time.monotonic() - began) / 50)

        # The bottom layer: every entry of it is a change to mark.
        table = app.query_one(LayerTable)
        table.focus()
        began = time.monotonic()
        table.move_cursor(row=0)
        await _until(pilot, lambda: app.view is not None and app.view.position == 0)
        _figure("browse: select layer 1 (its tree shown)", time.monotonic() - began)
        await _until(pilot, lambda: app.marks_ready)
        _figure(f"browse: layer 1's marks ({len(app.rows.marks)} changes)",
                time.monotonic() - began)
        began = time.monotonic()
        table.move_cursor(row=len(image.layers) - 1)
        await _until(pilot, lambda: app.marks_ready and app.view.position == len(image.layers) - 1)
        _figure("browse: back to the top layer, marks shown", time.monotonic() - began)

        # A filter over the whole tree.
        began = time.monotonic()
        await pilot.press("ctrl+f", *"conf")
        await _until(pilot, lambda: app.rows.keep is not None)
        _figure(f"browse: filter 'conf' ({len(app.rows.matched)} found)", time.monotonic() - began)
        await pilot.press("escape")
        await _until(pilot, lambda: app.usage[0] is not None)
        _figure("browse: usage figures in the status line", time.monotonic() - started)
        await _until(pilot, lambda: all(r.entries is not None for r in app.layer_rows))
        _figure("browse: every layer's size and entries", time.monotonic() - started)
        await pilot.press("q")
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024
    _figure("browse: peak RSS of the process", peak, "MB")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--files", type=int, default=200_000)
    parser.add_argument("--layers", type=int, default=5)
    parser.add_argument("--workdir", default="/var/tmp/layerfs-browse-bench")
    args = parser.parse_args()
    synthetic = ensure_image(Path(args.workdir), ImageParams(files=args.files, layers=args.layers,
                                                             big_size=1 << 20),
                             log=lambda text: print(text, file=sys.stderr))
    layers = synthetic.layer_dirs
    probe = PROBE_PATH.encode()

    began = time.monotonic()
    index = PathIndex(open_explicit_layers(layers).layers)
    Explainer(index).explain(probe)
    _figure("which, in process: index + one path", time.monotonic() - began)
    command = [sys.executable, "-m", "layerfs", "which", "--format", "layer-dirs",
               os.path.dirname(layers[0]), "/" + PROBE_PATH]
    began = time.monotonic()
    subprocess.run(command, cwd=REPO, capture_output=True, check=False)
    _figure("which, the command (with Python's start)", time.monotonic() - began)
    began = time.monotonic()
    subprocess.run([sys.executable, "-c", "import layerfs.browse.app"], cwd=REPO, check=True)
    _figure("browse: importing textual and the app (with Python's start)",
            time.monotonic() - began)

    asyncio.run(_browse(layers))
    tree = PathIndex(open_explicit_layers(layers).layers)
    began = time.monotonic()
    found = model.find(tree, model.Marks(), "conf")
    _figure(f"model.find 'conf' over a fresh tree ({len(found[0])} found)",
            time.monotonic() - began)
    return 0


if __name__ == "__main__":
    sys.exit(main())
