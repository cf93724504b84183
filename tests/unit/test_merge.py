"""The merge rule, checked by hand-written cases and against an independent model.

The model applies layers bottom-up as OCI changesets (layer.md: whiteouts
and opaque markers first, then the layer's entries); layerfs merges
top-down, one directory at a time. Both must give the same tree.
"""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from layerfs.merge import DirListing, MergedChild, merge_children

# -- hand-written cases ---------------------------------------------------------


def listing(entries=None, whiteouts=(), opaque=False) -> DirListing:
    return DirListing(dict(entries or {}), frozenset(whiteouts), opaque)


def test_top_layer_provides_a_name():
    merged = merge_children([(1, listing({b"a": False})), (0, listing({b"a": False}))])
    assert merged == {b"a": MergedChild(1, False)}


def test_directories_merge_down_to_a_non_directory():
    merged = merge_children([
        (3, listing({b"d": True})),
        (2, listing({b"d": True})),
        (1, listing({b"d": False})),
        (0, listing({b"d": True})),
    ])
    assert merged[b"d"] == MergedChild(3, True, (3, 2))


def test_missing_middle_layer_does_not_stop_a_merge():
    merged = merge_children([(2, listing({b"d": True})), (1, listing()), (0, listing({b"d": True}))])
    assert merged[b"d"].dir_layers == (2, 0)


def test_whiteout_hides_lower_layers_only():
    merged = merge_children([(1, listing({b"a": False}, whiteouts=[b"a", b"b"])),
                             (0, listing({b"a": False, b"b": False, b"c": False}))])
    assert set(merged) == {b"a", b"c"}
    assert merged[b"a"].layer == 1


def test_whiteout_in_the_same_layer_stops_a_directory_merge():
    merged = merge_children([(1, listing({b"d": True}, whiteouts=[b"d"])),
                             (0, listing({b"d": True}))])
    assert merged[b"d"].dir_layers == (1,)


def test_whiteout_in_a_middle_layer_stops_a_directory_merge():
    merged = merge_children([(2, listing({b"d": True})), (1, listing(whiteouts=[b"d"])),
                             (0, listing({b"d": True}))])
    assert merged[b"d"].dir_layers == (2,)


def test_opaque_listing_hides_lower_listings():
    merged = merge_children([(1, listing({b"new": False}, opaque=True)),
                             (0, listing({b"old": False}))])
    assert set(merged) == {b"new"}


def test_non_directory_hides_a_lower_directory():
    merged = merge_children([(1, listing({b"x": False})), (0, listing({b"x": True}))])
    assert merged[b"x"] == MergedChild(1, False)


# -- the model ----------------------------------------------------------------------

NAMES = [b"a", b"b", b"c"]
PATHS = [b"/".join(p) for p in
         [(a,) for a in NAMES] + [(a, b) for a in NAMES for b in NAMES]
         + [(a, b, c) for a in NAMES[:2] for b in NAMES[:2] for c in NAMES]]
KINDS = ["file", "dir", "opaque", "whiteout"]


def normalize(raw: dict[bytes, str]) -> dict[bytes, str]:
    """A consistent layer: nothing below a non-directory; parents implied as dirs."""
    layer: dict[bytes, str] = {}
    for path in sorted(raw, key=lambda p: p.count(b"/")):
        parts = path.split(b"/")
        parents = [b"/".join(parts[:i]) for i in range(1, len(parts))]
        if any(layer.get(p, "dir") not in ("dir", "opaque") for p in parents):
            continue
        for parent in parents:
            layer.setdefault(parent, "dir")
        layer[path] = raw[path]
    return layer


layers_strategy = st.lists(
    st.dictionaries(st.sampled_from(PATHS), st.sampled_from(KINDS), max_size=10).map(normalize),
    min_size=1, max_size=5)


def model(stack: list[dict[bytes, str]]) -> dict[bytes, tuple[int, bool]]:
    """Apply layers bottom-up as changesets; path -> (providing layer, is_dir)."""
    tree: dict[bytes, tuple[int, bool]] = {}

    def remove_below(path: bytes) -> None:
        for other in [p for p in tree if p.startswith(path + b"/")]:
            del tree[other]

    for position, layer in enumerate(stack):
        for path, kind in layer.items():
            if kind == "opaque":
                remove_below(path)
            elif kind == "whiteout":
                tree.pop(path, None)
                remove_below(path)
        for path, kind in layer.items():
            if kind == "whiteout":
                continue
            is_dir = kind in ("dir", "opaque")
            old = tree.get(path)
            if old is not None and not (old[1] and is_dir):
                remove_below(path)
            tree[path] = (position, is_dir)
    return tree


def listing_of(layer: dict[bytes, str], directory: bytes) -> DirListing | None:
    """One layer's listing of ``directory``, or None if the layer lacks that dir."""
    if directory and layer.get(directory) not in ("dir", "opaque"):
        return None
    prefix = directory + b"/" if directory else b""
    entries, whiteouts = {}, set()
    for path, kind in layer.items():
        if not path.startswith(prefix) or b"/" in path[len(prefix):]:
            continue
        name = path[len(prefix):]
        if kind == "whiteout":
            whiteouts.add(name)
        else:
            entries[name] = kind in ("dir", "opaque")
    return DirListing(entries, frozenset(whiteouts), layer.get(directory) == "opaque")


def merged_tree(stack: list[dict[bytes, str]]) -> dict[bytes, tuple[int, bool]]:
    """layerfs's top-down merge, one directory at a time as the index does it."""
    tree: dict[bytes, tuple[int, bool]] = {}
    pending = [(b"", tuple(range(len(stack) - 1, -1, -1)), True)]
    while pending:
        directory, positions, is_root = pending.pop()
        listings = []
        for position in positions:
            found = listing_of(stack[position], directory)
            assert found is not None
            if is_root:
                found.opaque = False
            listings.append((position, found))
        for name, child in merge_children(listings).items():
            path = directory + b"/" + name if directory else name
            tree[path] = (child.layer, child.is_dir)
            if child.is_dir:
                pending.append((path, child.dir_layers, False))
    return tree


@settings(max_examples=600, deadline=None)
@given(layers_strategy)
def test_top_down_merge_equals_bottom_up_changesets(stack):
    assert merged_tree(stack) == model(stack)
