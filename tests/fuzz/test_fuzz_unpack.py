"""Fuzzing the layer unpacker: any tar stream, plain or compressed, either unpacks or fails
with a LayerfsError; a failure leaves nothing in the cache; nothing lands outside it."""

from __future__ import annotations

import gzip
import io
import itertools
import os
import shutil
import tempfile
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from layerfs.errors import LayerfsError
from layerfs.unpack import LayerBlob, LayerCache
from layerfs.unpack.limits import UnpackLimits

from .regressions import save_regression
from .strategies import FUZZ, tar_streams

LIMITS = UnpackLimits(max_layer_size=64 << 20, max_entries=10_000)


@pytest.fixture(scope="module")
def area():
    path = Path(tempfile.mkdtemp(prefix="layerfs-fuzz-", dir=os.environ.get("LAYERFS_TEST_TMP",
                                                                             "/var/tmp")))
    (path / "canary").mkdir()
    (path / "canary" / "keep").write_text("keep")
    try:
        yield path
    finally:
        from layerfs.rmtree import remove_tree
        remove_tree(path)


_counter = itertools.count()


def unpack_once(area: Path, blob: bytes, *, privileged: bool = False) -> None:
    """Unpack ``blob``; a crash (anything but LayerfsError) is saved as a regression input."""
    cache = LayerCache(area / f"cache{next(_counter)}", privileged=privileged, limits=LIMITS)
    try:
        try:
            cache.ensure(LayerBlob("fuzz", lambda: io.BytesIO(blob)), None)
        except LayerfsError as exc:
            assert "\n" not in str(exc), str(exc)
            leftovers = [p for sub in ("layers", "tmp") for p in (cache.directory / sub).iterdir()]
            assert not leftovers, leftovers
        except Exception:
            save_regression("tar", blob)
            raise
    finally:
        for lock in list(cache._held):
            lock.release()
        shutil.rmtree(cache.directory, ignore_errors=True)
    assert sorted(os.listdir(area)) == sorted(["canary"]), os.listdir(area)
    assert os.listdir(area / "canary") == ["keep"]


@FUZZ
@given(stream=tar_streams())
def test_fuzz_tar_streams(area: Path, stream: bytes) -> None:
    unpack_once(area, stream)


@FUZZ
@given(stream=tar_streams(), cut=st.integers(0, 64), flip=st.integers(0, 400))
def test_fuzz_compressed_streams(area: Path, stream: bytes, cut: int, flip: int) -> None:
    import zstandard
    for blob in (gzip.compress(stream, mtime=0), zstandard.ZstdCompressor().compress(stream)):
        damaged = bytearray(blob[:len(blob) - cut] if cut < len(blob) else blob)
        if flip < len(damaged):
            damaged[flip] ^= 0xA5
        unpack_once(area, bytes(damaged))


@pytest.mark.skipif(os.geteuid() != 0, reason="the privileged path (mknod, chown) needs root")
@FUZZ
@given(stream=tar_streams())
def test_fuzz_tar_streams_privileged(area: Path, stream: bytes) -> None:
    unpack_once(area, stream, privileged=True)
