"""The one size formatter and parser: what is printed can be typed back."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from layerfs.sizes import format_size, parse_size, plural


@pytest.mark.parametrize("value, text", [
    (None, "-"), (0, "0B"), (1023, "1023B"), (1024, "1K"), (1536, "1.5K"),
    (3_250_000, "3.1M"), (16 << 20, "16M"), (64 << 30, "64G"), (3 << 40, "3T"),
    (5000 << 40, "5000T"), (-2048, "-2K"),
])
def test_format(value, text):
    assert format_size(value) == text


@pytest.mark.parametrize("text, value", [
    ("4096", 4096), ("20M", 20 << 20), ("20MB", 20 << 20), ("20MiB", 20 << 20),
    ("1.5g", 3 << 29), ("10KiB", 10240), ("7B", 7), (" 2 T ", 2 << 40),
])
def test_parse(text, value):
    assert parse_size(text) == value


@pytest.mark.parametrize("text", ["", "M", "-1M", "1X", "1.5.2K", "ten"])
def test_parse_refuses(text):
    with pytest.raises(ValueError):
        parse_size(text)


@given(st.integers(min_value=0, max_value=1 << 50))
def test_what_is_printed_reads_back_within_the_rounding(value):
    back = parse_size(format_size(value))
    assert abs(back - value) <= max(value * 0.05, 1)


def test_plural():
    assert [plural(n, "layer") for n in (0, 1, 2)] == ["0 layers", "1 layer", "2 layers"]
    assert plural(1, "entry") == "1 entry" and plural(3, "entry") == "3 entries"
    assert plural(2, "key") == "2 keys"
