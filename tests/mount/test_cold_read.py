"""A cold walk that reads every file (tar) through a mount: the daemon reads
ahead across each directory's files (layerfs/readahead.py), and every byte
read is the file the merged tree shows.

The layer files are evicted from the page cache first (POSIX_FADV_DONTNEED,
file by file: nothing else on the machine is touched), so the walk's reads
find them cold; the --debug log says what was read ahead."""

from __future__ import annotations

import io
import os
import subprocess
import tarfile
from pathlib import Path

import pytest

from tests.support.mounting import layerfs_mounted
from tests.support.pagecache import evict

LAYERS = 3
DIRS = 4
FILES = 40


def _stack(root: Path) -> tuple[list[Path], dict[str, bytes]]:
    """Layers whose files overlap (an upper one shadows a lower one's), and
    what the merged tree shows."""
    layers, shown = [], {}
    for index in range(LAYERS):
        layer = root / f"layer{index}"
        for directory in range(DIRS):
            sub = layer / "srv" / f"d{directory}"
            sub.mkdir(parents=True)
            for number in range(index, FILES, LAYERS - index):
                data = os.urandom(1000 + number * 517)
                (sub / f"f{number:03d}").write_bytes(data)
                shown[f"srv/d{directory}/f{number:03d}"] = data
        layers.append(layer)
    return layers, shown


def _evict(layers: list[Path]) -> None:
    for layer in layers:
        for path in layer.rglob("*"):
            if path.is_file():
                evict(path)


@pytest.mark.parametrize("engine", ["native", "pyfuse3"])
def test_a_cold_walk_reads_every_file_as_the_tree_shows_it(scratch, monkeypatch, engine):
    monkeypatch.setenv("LAYERFS_ENGINE", engine)
    layers, shown = _stack(scratch)
    mountpoint = scratch / "mnt"
    mountpoint.mkdir()
    log = scratch / "daemon.log"
    args = [arg for layer in layers for arg in ("--layer", str(layer))]
    with layerfs_mounted(mountpoint, "--debug", "--log", str(log), *args):
        _evict(layers)
        archive = subprocess.run(["tar", "-cf", "-", "-C", str(mountpoint), "."],
                                 capture_output=True, check=True).stdout
    read = {}
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        for member in tar:
            if member.isfile():
                read[os.path.normpath(member.name)] = tar.extractfile(member).read()
    assert read == shown
    warmed = [line for line in log.read_text().splitlines() if "read-ahead:" in line]
    # The first read of each directory starts a walk there; then its next files
    # are read ahead (the walk is followed from one directory into the next).
    assert len(warmed) >= DIRS, log.read_text()[-3000:]
