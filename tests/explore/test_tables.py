"""Tables (layerfs/tables.py): drawn by rich on a terminal, plain padded columns when piped,
no colour with NO_COLOR."""

from __future__ import annotations

import io
import re
import subprocess
from pathlib import Path

from layerfs.tables import plain, render
from layerfs.unpack import LayerBlob, LayerCache
from layerfs.unpack.digests import sha256_digest
from tests.images.tarbuild import d, f, layer_tar
from tests.support.mounting import layerfs_command, layerfs_env
from tests.support.terminal import run_on_terminal

COLOUR = re.compile(rb"\x1b\[[0-9;]*3[0-9;]*m")  # an SGR sequence setting a colour
ESCAPE = re.compile(rb"\x1b\[")


def test_plain_columns_are_padded_to_their_widest_cell() -> None:
    text = plain(("NAME", "SIZE", "NOTE"), [("a", "1.5K", "x"), ("longer", "12", "last  ")],
                 right={1})
    assert text.splitlines() == ["NAME    SIZE  NOTE",
                                 "a       1.5K  x",
                                 "longer    12  last"]


def test_a_stream_that_is_not_a_terminal_gets_plain_text() -> None:
    rows = [("[bold]x[/bold]", "1")]
    assert render(("A", "B"), rows, styles=[("red",)], stream=io.StringIO()) == \
        plain(("A", "B"), rows)


def _stdout_on_terminal(command: list[str], env: dict[str, str]) -> bytes:
    status, _, output = run_on_terminal(command, env, timeout=60, stream="stdout")
    assert status == 0, output
    return output


def test_cache_ls_is_drawn_on_a_terminal_and_plain_when_piped(tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    tar = layer_tar([d("etc"), f("etc/hosts", b"h")])
    LayerCache(cache).ensure(LayerBlob(label="L", open=lambda: io.BytesIO(tar),
                                       diff_id=sha256_digest(tar)), None)
    command = layerfs_command("cache", "ls", "--cache-dir", str(cache))
    env = layerfs_env()
    env.pop("NO_COLOR", None)
    drawn = _stdout_on_terminal(command, env)
    assert b"CHAINID" in drawn and "─".encode() in drawn and b"1 layer," in drawn
    assert ESCAPE.search(drawn)  # the bold header
    uncoloured = _stdout_on_terminal(command, {**env, "NO_COLOR": "1"})
    assert b"CHAINID" in uncoloured and not COLOUR.search(uncoloured)

    piped = subprocess.run(command, env=env, capture_output=True, check=True).stdout
    assert not ESCAPE.search(piped) and "─".encode() not in piped
    header, row, total = piped.decode().splitlines()
    assert header.split() == ["CHAINID", "SIZE", "ENTRIES", "IN", "USE", "IMAGES"]
    assert row.split()[2] == "2" and total.startswith("1 layer, ")
