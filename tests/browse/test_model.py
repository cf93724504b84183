"""The browser's model without any UI: marks, rows, views, filter, previews."""

from __future__ import annotations

import os
from pathlib import Path

from layerfs.browse import model
from layerfs.browse.model import COMPARE, Marks, Stacks, TreeRows, View
from layerfs.explore.diff import TreeDiff
from layerfs.images import open_image
from tests.browse.conftest import BINARY
from tests.explore.images import File, Whiteout, layer_dirs_image


def _stacks(path: Path) -> Stacks:
    return Stacks(open_image(str(path)), path.name)


def _expand_all(rows: TreeRows) -> None:
    number = 0
    while number < len(rows.rows):
        rows.expand(number)
        number += 1


def test_splicing_equals_a_fresh_walk(stack_image: Path) -> None:
    stacks = _stacks(stack_image)
    tree = stacks.as_of(1)
    marks = Marks(model.changes_of([stacks], View(0, 1)))
    rows = TreeRows(tree, marks)
    _expand_all(rows)
    fresh = TreeRows(tree, marks, expanded=set(rows.expanded))
    assert [(r.path, r.depth, r.mark) for r in rows.rows] == \
        [(r.path, r.depth, r.mark) for r in fresh.rows]
    # Every entry of the tree is a row, and so is every removal of the view.
    assert {r.path for r in rows.rows if r.node is not None} == {p for p, _ in tree.walk() if p}
    removed = {c.path for c in TreeDiff(stacks.as_of(0), tree).changes() if c.kind == "removed"}
    assert removed == {r.path for r in rows.rows if r.node is None} == {b"gone", b"opq/old"}
    etc = next(n for n, r in enumerate(rows.rows) if r.path == b"etc")
    before = len(rows.rows)
    rows.collapse(etc)
    assert len(rows.rows) == before - 2 and not rows.rows[etc].expanded
    assert rows.find(b"etc/hosts") == etc + 1 and rows.rows[etc].expanded


def test_views_compare_what_diff_compares(stack_image: Path) -> None:
    stacks = _stacks(stack_image)
    layer = Marks(model.changes_of([stacks], View(0, 2)))
    aggregated = Marks(model.changes_of([stacks], View(0, 2, aggregated=True)))
    assert layer.letter(b"etc/hosts") == "M" and b"tmp" in layer.removed
    assert aggregated.letter(b"opq") == "O" and b"gone" in aggregated.removed[b""]
    assert b"gone" not in layer.removed.get(b"", {})
    bottom = Marks(model.changes_of([stacks], View(0, 0, aggregated=True)))
    assert set(bottom.summary.__dict__.values()) != {0} and not bottom.removed


def test_compare_two_images(tmp_path: Path) -> None:
    a = layer_dirs_image(tmp_path / "a", layers=[{b"x": File(b"1"), b"y": File(b"y")}])
    b = layer_dirs_image(tmp_path / "b", layers=[{b"x": File(b"1"), b"y": File(b"y")},
                                                 {b"x": File(b"22"), b"y": Whiteout(),
                                                  b"z": File(b"z")}])
    sides = [_stacks(a), _stacks(b)]
    marks = Marks(model.changes_of(sides, View(1, COMPARE)))
    rows = TreeRows(model.tree_of(sides, View(1, COMPARE)), marks)
    assert [(r.path, r.mark) for r in rows.rows] == [(b"x", "M"), (b"y", "D"), (b"z", "A")]


def test_filter_keeps_matches_and_their_dirs(stack_image: Path) -> None:
    stacks = _stacks(stack_image)
    tree = stacks.as_of(stacks.top)
    marks = Marks(model.changes_of([stacks], View(0, stacks.top)))
    rows = TreeRows(tree, marks)
    rows.set_filter("SH", model.find(tree, marks, "SH"))
    assert [r.path for r in rows.rows] == [b"bin", b"bin/sh", b"bin/sh-link"]
    rows.set_only_changes(True)
    assert [r.path for r in rows.rows] == [b"bin", b"bin/sh-link"]
    rows.set_filter("", None)
    rows.set_only_changes(False)
    assert b"etc" in [r.path for r in rows.rows]


def test_facts_preview_text_and_hex(stack_image: Path) -> None:
    stacks = _stacks(stack_image)
    tree = stacks.as_of(stacks.top)
    rows = TreeRows(tree)
    hosts = rows.rows[rows.find(b"etc/hosts")]
    facts = model.facts(tree, hosts)
    assert facts.preview == ["c" * 30] and not facts.binary
    assert [(v.position, v.state) for v in facts.provenance.versions] == \
        [(2, "provides"), (1, "shadowed"), (0, "shadowed")]
    blob = model.facts(tree, rows.rows[rows.find(b"bin/blob")])
    assert blob.binary and blob.preview[0].startswith("00000000  00 01 02 03")
    assert len(blob.preview) == len(BINARY) // 16
    link = model.facts(tree, rows.rows[rows.find(b"bin/sh-link")])
    assert link.target == "/bin/sh"


def test_preview_keeps_a_cut_character_as_text() -> None:
    lines, binary = model.preview_lines("é".encode() * 10 + "é".encode()[:1])
    assert not binary and lines == ["é" * 10]
    lines, binary = model.preview_lines(b"\xff\xfe" + b"a" * 20)
    assert binary and lines[0].endswith("|..aaaaaaaaaaaaaa|")


def test_layer_rows_are_inspects(stack_image: Path) -> None:
    image = open_image(str(stack_image))
    rows = model.layer_rows(image)
    assert [r.entries for r in rows] == [None] * 3
    model.survey(image, rows)
    walked = [sum(len(d) + len(f) for _, d, f in os.walk(layer.root)) for layer in image.layers]
    assert [r.entries for r in rows] == walked
