"""Fixtures for the browser's tests: images built once per module (layer dirs with
``.wh.`` whiteouts, an opaque dir, modified files; an OCI layout built with umoci), a
textual pilot, and the CLI's JSON to compare with."""

from __future__ import annotations

import asyncio
import os
import shutil
import tempfile
from pathlib import Path

import pytest

from tests.explore.images import File, Whiteout, have, layer_dirs_image, stack, umoci_image

_SCRATCH = os.environ.get("LAYERFS_TEST_TMP", "/var/tmp")
BINARY = bytes(range(256))


def browse_stack() -> list[dict]:
    """The explore tests' stack (a dir deleted by a whiteout, an opaque dir, a file
    rewritten twice, a dir replaced by a file...) and a binary file in layer 2."""
    layers = stack()
    layers[1][b"bin/blob"] = File(BINARY)
    layers[2][b"copy"] = Whiteout()
    return layers


@pytest.fixture(scope="module")
def module_scratch():
    path = Path(tempfile.mkdtemp(prefix="layerfs-browse-", dir=_SCRATCH))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(scope="module")
def stack_image(module_scratch: Path) -> Path:
    return layer_dirs_image(module_scratch / "stack", layers=browse_stack())


@pytest.fixture(scope="module")
def umoci_layout(module_scratch: Path) -> Path:
    if not have("umoci"):
        pytest.skip("umoci is not installed")
    return umoci_image(module_scratch / "umoci")


@pytest.fixture(scope="module")
def cache_dir(module_scratch: Path) -> Path:
    return module_scratch / "cache"


def run(scenario) -> None:
    """Run an async pilot scenario to its end (no asyncio plugin needed)."""
    asyncio.run(asyncio.wait_for(scenario, timeout=120))
