"""The redirect-following rule, over a fake layer stack (no I/O)."""

from __future__ import annotations

from layerfs.redirects import DIR, MISSING, OTHER, WHITEOUT, Probe, redirected_stack, renamed


def prober(layers: dict[int, dict[bytes, Probe]]):
    def probe(position: int, path: bytes) -> Probe:
        return layers.get(position, {}).get(path, Probe(MISSING))
    return probe


def test_relative_redirect_looks_up_the_old_name_in_the_parent_stack():
    layers = {1: {b"p/old": Probe(DIR)}, 0: {b"q/old": Probe(DIR), b"p/old": Probe(DIR)}}
    stack = redirected_stack(2, b"old", [(2, b"p"), (1, b"p"), (0, b"q")], [2, 1, 0],
                             prober(layers))
    assert stack == [(1, b"p/old"), (0, b"q/old")]


def test_absolute_redirect_searches_every_layer_below():
    layers = {1: {b"a/b": Probe(DIR)}, 0: {b"a/b": Probe(DIR)}}
    stack = redirected_stack(2, b"/a/b", [(2, b"x")], [2, 1, 0], prober(layers))
    assert stack == [(1, b"a/b"), (0, b"a/b")]


def test_search_stops_at_a_whiteout_a_file_or_an_opaque_dir():
    assert redirected_stack(3, b"/d", [], [3, 2, 1, 0], prober(
        {2: {b"d": Probe(DIR)}, 1: {b"d": Probe(WHITEOUT)}, 0: {b"d": Probe(DIR)}})) == [(2, b"d")]
    assert redirected_stack(3, b"/d", [], [3, 2, 1, 0], prober(
        {2: {b"d": Probe(OTHER)}, 0: {b"d": Probe(DIR)}})) == []
    assert redirected_stack(3, b"/d", [], [3, 2, 1, 0], prober(
        {2: {b"d": Probe(DIR, opaque=True)}, 0: {b"d": Probe(DIR)}})) == [(2, b"d")]


def test_a_lower_copy_may_redirect_again():
    layers = {
        2: {b"b": Probe(DIR, redirects=((0, b"/a"),))},
        1: {b"a": Probe(DIR, redirects=((0, b"z"),))},
        0: {b"z": Probe(DIR), b"a": Probe(DIR)},
    }
    stack = redirected_stack(3, b"/b", [(3, b""), (2, b""), (1, b""), (0, b"")], [3, 2, 1, 0],
                             prober(layers))
    assert stack == [(2, b"b"), (1, b"a"), (0, b"z")]


def test_trailing_nul_in_the_xattr_value_is_ignored():
    layers = {0: {b"old": Probe(DIR)}}
    assert redirected_stack(1, b"old\0", [(1, b""), (0, b"")], [1, 0], prober(layers)) == \
        [(0, b"old")]


def test_redirects_on_the_way_rewrite_the_path_for_the_layers_below():
    # Layer 1 holds the renamed a2 (redirect "a") with its renamed child sub2
    # (redirect "sub"): looking up /a2/sub2 there sends the layers below to /a/sub.
    layers = {
        1: {b"a2/sub2": Probe(DIR, redirects=((0, b"a"), (1, b"sub")))},
        0: {b"a/sub": Probe(DIR)},
    }
    assert redirected_stack(2, b"/a2/sub2", [], [2, 1, 0], prober(layers)) == \
        [(1, b"a2/sub2"), (0, b"a/sub")]
    assert renamed(b"/x/y/z", 3, [(1, b"/p/q")]) == b"/p/q/z"
    assert renamed(b"/x/y/z", 3, [(0, b"w")]) == b"/w/y/z"
    assert renamed(b"name", 1, [(0, b"old")]) == b"old"
