"""``layerfs browse`` driven through textual's pilot: what it shows is what ``inspect``,
``diff``, ``which`` and ``usage`` say for the same image."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

pytest.importorskip("textual", reason="textual is not installed")

from textual.worker import WorkerState  # noqa: E402

from layerfs.browse.app import BrowseApp, LayerTable  # noqa: E402
from layerfs.browse.tree import FileTree  # noqa: E402
from layerfs.images import open_image  # noqa: E402
from layerfs.sizes import format_size  # noqa: E402
from layerfs.unpack import LayerCache  # noqa: E402
from tests.browse.conftest import run  # noqa: E402
from tests.explore.conftest import layerfs_json  # noqa: E402

SIZE = (160, 48)
LETTER = {"added": "A", "modified": "M", "removed": "D", "opaque": "O"}


def make_app(*specs: str, cache_dir: Path | None = None) -> BrowseApp:
    images = []
    for spec in specs:
        cache = LayerCache(cache_dir) if cache_dir is not None else None
        images.append((open_image(spec, cache=cache, quiet=True), os.path.basename(spec)))
    return BrowseApp(images)


async def settle(pilot) -> None:
    """Let every worker (changes, facts, figures) finish and their results land."""
    for _ in range(3):
        while any(w.state in (WorkerState.PENDING, WorkerState.RUNNING)
                  for w in pilot.app.workers):
            await pilot.pause(0.01)
        await pilot.pause()


async def select_layer(pilot, number: int) -> None:
    """Move the layers pane's cursor to row ``number`` with j/k, as a user would."""
    table = pilot.app.query_one(LayerTable)
    table.focus()
    await pilot.pause()
    while table.cursor_row != number:
        await pilot.press("j" if table.cursor_row < number else "k")
    await settle(pilot)


async def expand_all(pilot) -> None:
    tree = pilot.app.query_one(FileTree)
    tree.focus()
    await pilot.press("home")
    while True:
        row = tree.current
        if row is not None and row.is_dir and not row.expanded:
            await pilot.press("right")
        if tree.cursor >= len(tree.model.rows) - 1:
            break
        await pilot.press("down")
    await settle(pilot)


def shown_marks(app: BrowseApp) -> dict[str, str]:
    """The A/M/D/O marks of the tree pane's rows, by absolute path."""
    rows = app.query_one(FileTree).model.rows
    return {"/" + os.fsdecode(row.path): row.mark for row in rows if row.mark in "AMDO" and row.mark}


def diff_marks(*args: str) -> dict[str, str]:
    (diff,) = layerfs_json("diff", *args)["diffs"]
    return {change["path"]: LETTER[change["kind"]] for change in diff["changes"]}


def shown_paths(app: BrowseApp) -> list[str]:
    return ["/" + os.fsdecode(row.path) for row in app.query_one(FileTree).model.rows]


# -- the layers pane ------------------------------------------------------------------

def test_layers_match_inspect(umoci_layout: Path, cache_dir: Path) -> None:
    spec = f"{umoci_layout}:v3"
    inspect = layerfs_json("inspect", spec, "--cache-dir", str(cache_dir))["layers"]

    async def scenario() -> None:
        app = make_app(spec, cache_dir=cache_dir)
        async with app.run_test(size=SIZE) as pilot:
            await settle(pilot)
            table = app.query_one(LayerTable)
            assert table.row_count == len(inspect) == 3
            for number, expected in enumerate(inspect):
                row = app.layer_rows[number]
                assert (row.diff_id, row.created_by, row.size, row.entries) == (
                    expected["diff_id"], expected["created_by"], expected["size"],
                    expected["entries"])
                cells = [str(cell) for cell in table.get_row_at(number)]
                assert cells[0] == str(number + 1)
                assert cells[3] == expected["created_by"]
                assert cells[4] == expected["diff_id"].partition(":")[2][:12]
            await pilot.press("q")
        assert app.return_value == 0

    run(scenario())


def test_layers_of_layer_dirs_match_inspect(stack_image: Path) -> None:
    inspect = layerfs_json("inspect", str(stack_image))["layers"]

    async def scenario() -> None:
        app = make_app(str(stack_image))
        async with app.run_test(size=SIZE) as pilot:
            await settle(pilot)
            assert [(r.size, r.entries) for r in app.layer_rows] == \
                [(e["size"], e["entries"]) for e in inspect]

    run(scenario())


# -- the tree and its marks -------------------------------------------------------------------

def test_each_layer_is_marked_as_diff_says(stack_image: Path) -> None:
    async def scenario() -> None:
        app = make_app(str(stack_image))
        async with app.run_test(size=SIZE) as pilot:
            await settle(pilot)
            for number in (2, 1, 0):
                await select_layer(pilot, number)
                await expand_all(pilot)
                assert shown_marks(app) == diff_marks(str(stack_image), str(number + 1)), number
            # The tree is the image as of that layer: layer 1 has /gone, layer 2 not.
            assert "/gone/x" in shown_paths(app)
            await select_layer(pilot, 1)
            await expand_all(pilot)
            marks = shown_marks(app)
            assert marks["/gone"] == "D" and "/gone/x" not in shown_paths(app)
            assert marks["/opq"] == "O" and marks["/opq/old"] == "D" and marks["/opq/new"] == "A"
            assert marks["/etc/hosts"] == "M"
            rows = {os.fsdecode(r.path): r for r in app.query_one(FileTree).model.rows}
            assert rows["gone"].change.via == "whiteout" and rows["opq/old"].change.via == "opaque"
            await pilot.press("q")
        assert app.return_value == 0

    run(scenario())


def test_umoci_layers_are_marked_as_diff_says(umoci_layout: Path, cache_dir: Path) -> None:
    spec = f"{umoci_layout}:v3"

    async def scenario() -> None:
        app = make_app(spec, cache_dir=cache_dir)
        async with app.run_test(size=SIZE) as pilot:
            await settle(pilot)
            for number in (2, 1):
                await select_layer(pilot, number)
                await expand_all(pilot)
                assert shown_marks(app) == diff_marks(spec, str(number + 1), "--cache-dir",
                                                      str(cache_dir))

    run(scenario())


def test_aggregated_view_is_diff_from_the_bottom_layer(stack_image: Path) -> None:
    async def scenario() -> None:
        app = make_app(str(stack_image))
        async with app.run_test(size=SIZE) as pilot:
            await settle(pilot)
            await pilot.press("ctrl+a")
            await settle(pilot)
            await expand_all(pilot)
            assert shown_marks(app) == diff_marks(str(stack_image), "1", "3")
            await pilot.press("ctrl+l")
            await settle(pilot)
            assert shown_marks(app) == diff_marks(str(stack_image), "3")

    run(scenario())


def test_only_changes_hides_the_rest(stack_image: Path) -> None:
    async def scenario() -> None:
        app = make_app(str(stack_image))
        async with app.run_test(size=SIZE) as pilot:
            await settle(pilot)
            await expand_all(pilot)
            assert "/etc/passwd" in shown_paths(app)
            await pilot.press("ctrl+u")
            await settle(pilot)
            expected = diff_marks(str(stack_image), "3")
            shown = shown_paths(app)
            assert set(expected) <= set(shown) and "/etc/passwd" not in shown
            # What stays is a change or a directory holding one.
            assert all(p in expected or any(e.startswith(p + "/") for e in expected)
                       for p in shown)

    run(scenario())


def test_two_images_are_marked_as_diff_a_b(umoci_layout: Path, cache_dir: Path) -> None:
    a, b = f"{umoci_layout}:v1", f"{umoci_layout}:v3"

    async def scenario() -> None:
        app = make_app(a, b, cache_dir=cache_dir)
        async with app.run_test(size=SIZE) as pilot:
            await settle(pilot)
            assert app.query_one(LayerTable).row_count == 1 + 1 + 3
            await expand_all(pilot)
            assert shown_marks(app) == diff_marks(a, b, "--cache-dir", str(cache_dir))
            # Picking one of B's layers shows that layer's own changes.
            await select_layer(pilot, 4)
            await expand_all(pilot)
            assert shown_marks(app) == diff_marks(b, "3", "--cache-dir", str(cache_dir))

    run(scenario())


# -- filter, collapse, keys -------------------------------------------------------------

def test_filter_by_name(stack_image: Path) -> None:
    async def scenario() -> None:
        app = make_app(str(stack_image))
        async with app.run_test(size=SIZE) as pilot:
            await settle(pilot)
            await pilot.press("ctrl+f")
            await pilot.press(*"host")
            await settle(pilot)
            assert shown_paths(app) == ["/etc", "/etc/hosts"]
            await pilot.press("enter")
            assert app.focused is app.query_one(FileTree)
            # A removed entry matches too (it shows where it was).
            await pilot.press("ctrl+f", *["backspace"] * 4, *"big")
            await settle(pilot)
            assert shown_paths(app) == ["/tmp", "/tmp/big"]
            assert shown_marks(app) == {"/tmp/big": "D"}
            await pilot.press("escape")
            await settle(pilot)
            assert "/etc/passwd" in shown_paths(app) or "/etc" in shown_paths(app)
            assert app.query_one("#filter").value == ""
            await pilot.press("q")
        assert app.return_value == 0

    run(scenario())


def test_space_collapses(stack_image: Path) -> None:
    async def scenario() -> None:
        app = make_app(str(stack_image))
        async with app.run_test(size=SIZE) as pilot:
            await settle(pilot)
            tree = app.query_one(FileTree)
            assert "/etc/hosts" not in shown_paths(app)
            while tree.current.path != b"etc":
                await pilot.press("j")
            await pilot.press("space")
            assert "/etc/hosts" in shown_paths(app)
            count = len(tree.model.rows)
            await pilot.press("j", "space")  # on a file: folds its directory
            assert tree.current.path == b"etc" and not tree.current.expanded
            assert len(tree.model.rows) < count and "/etc/hosts" not in shown_paths(app)
            await pilot.press("space", "ctrl+space")
            assert all(row.depth == 0 for row in tree.model.rows)

    run(scenario())


def test_tab_switches_panes_and_mouse_selects(stack_image: Path) -> None:
    async def scenario() -> None:
        app = make_app(str(stack_image))
        async with app.run_test(size=SIZE) as pilot:
            await settle(pilot)
            tree, table = app.query_one(FileTree), app.query_one(LayerTable)
            assert app.focused is tree
            await pilot.press("tab")
            assert app.focused is app.query_one("#detail")
            await pilot.press("tab")
            assert app.focused is table
            await pilot.press("tab")
            assert app.focused is tree
            await pilot.click(FileTree, offset=(10, 3))
            await settle(pilot)
            assert tree.cursor == 2  # the border takes the first line

    run(scenario())


# -- the detail pane -------------------------------------------------------------------------

def _facts(app: BrowseApp) -> str:
    return str(app.query_one("#facts").render())


async def _cursor_to(pilot, path: bytes) -> None:
    tree = pilot.app.query_one(FileTree)
    number = tree.model.find(path)
    assert number is not None
    tree.refresh_rows(path)
    await settle(pilot)


def test_detail_pane_shows_versions_as_which(stack_image: Path) -> None:
    which = layerfs_json("which", str(stack_image), "/etc/hosts")["paths"][0]

    async def scenario() -> None:
        app = make_app(str(stack_image))
        async with app.run_test(size=SIZE) as pilot:
            await settle(pilot)
            await _cursor_to(pilot, b"etc/hosts")
            text = _facts(app)
            lines = [line.split() for line in text.splitlines() if line.startswith("  ")]
            assert [(int(v[0]), v[2]) for v in lines] == \
                [(v["layer"], v["state"]) for v in which["versions"]]
            assert "first lines:" in text and "c" * 30 in text
            await _cursor_to(pilot, b"bin/blob")
            text = _facts(app)
            assert "first bytes:" in text and "00000000  00 01 02 03" in text
            await _cursor_to(pilot, b"copy")  # removed by layer 3's whiteout
            text = _facts(app)
            assert "D removed by whiteout" in text and "hidden: deleted by .wh.copy" in text

    run(scenario())


def test_jump_to_the_providing_layer(stack_image: Path) -> None:
    async def scenario() -> None:
        app = make_app(str(stack_image))
        async with app.run_test(size=SIZE) as pilot:
            await settle(pilot)
            await _cursor_to(pilot, b"etc/passwd")
            await pilot.press("p")
            await settle(pilot)
            assert app.query_one(LayerTable).cursor_row == 0
            assert app.view.position == 0
            assert app.query_one(FileTree).current.path == b"etc/passwd"
            assert shown_marks(app)["/etc/passwd"] == "A"

    run(scenario())


def test_status_line_has_usage_figures(stack_image: Path) -> None:
    report = layerfs_json("usage", str(stack_image))

    async def scenario() -> None:
        app = make_app(str(stack_image))
        async with app.run_test(size=SIZE) as pilot:
            await settle(pilot)
            status = str(app.query_one("#status").render())
            shown = app.usage[0]
            assert round(shown.efficiency, 4) == report["efficiency"]
            assert shown.wasted_bytes == report["wasted_bytes"] > 0
            assert f"efficiency {shown.efficiency * 100:.1f}%" in status
            assert f"wasted {format_size(report['wasted_bytes'])}" in status

    run(scenario())


def test_cli_refuses_without_a_terminal(stack_image: Path) -> None:
    from tests.support.mounting import run_layerfs

    result = run_layerfs("browse", str(stack_image))
    assert result.returncode == 2
    assert result.stderr.strip().startswith("layerfs browse: needs a terminal")


@pytest.mark.parametrize("bad", ["/nonexistent/image"])
def test_cli_bad_image_is_one_line(bad: str) -> None:
    from tests.support.mounting import run_layerfs

    result = run_layerfs("browse", bad)
    assert result.returncode != 0 and len(result.stderr.strip().splitlines()) == 1


def test_filter_stays_across_layers(stack_image: Path) -> None:
    async def scenario() -> None:
        app = make_app(str(stack_image))
        async with app.run_test(size=SIZE) as pilot:
            await settle(pilot)
            await pilot.press("ctrl+f", *"old", "enter")
            await settle(pilot)
            assert shown_paths(app) == []  # /opq/old is gone by the top layer
            await select_layer(pilot, 1)  # ... removed by layer 2's opaque /opq
            assert shown_paths(app) == ["/opq", "/opq/old"]
            assert shown_marks(app) == {"/opq": "O", "/opq/old": "D"}
            await select_layer(pilot, 0)
            assert shown_paths(app) == ["/opq", "/opq/old"]
            assert shown_marks(app) == {"/opq": "A", "/opq/old": "A"}

    run(scenario())


def test_keys_type_into_the_filter(stack_image: Path) -> None:
    async def scenario() -> None:
        app = make_app(str(stack_image))
        async with app.run_test(size=SIZE) as pilot:
            await settle(pilot)
            await pilot.press("ctrl+f", "q", "p", "j", "space")
            assert app.query_one("#filter").value == "qpj " and app.is_running
            await pilot.press("escape", "q")
        assert app.return_value == 0

    run(scenario())
