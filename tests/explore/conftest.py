"""Fixtures for the explore tests: images built once per module, and the CLI as JSON."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path

import pytest

from tests.explore.images import have, layer_dirs_image, umoci_image
from tests.support.mounting import run_layerfs

_SCRATCH = os.environ.get("LAYERFS_TEST_TMP", "/var/tmp")


@pytest.fixture(scope="module")
def module_scratch():
    path = Path(tempfile.mkdtemp(prefix="layerfs-explore-", dir=_SCRATCH))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(scope="module")
def stack_image(module_scratch: Path) -> Path:
    """Extracted layer dirs with ``.wh.`` markers (the OCI form)."""
    return layer_dirs_image(module_scratch / "stack")


@pytest.fixture(scope="module")
def umoci_layout(module_scratch: Path) -> Path:
    if not have("umoci"):
        pytest.skip("umoci is not installed")
    return umoci_image(module_scratch / "umoci")


@pytest.fixture(scope="module")
def cache_dir(module_scratch: Path) -> Path:
    return module_scratch / "cache"


def layerfs_json(*args: str, expect: int | None = 0) -> dict:
    result = run_layerfs(*args, "--json")
    if expect is not None:
        assert result.returncode == expect, result.stderr
    return json.loads(result.stdout)
