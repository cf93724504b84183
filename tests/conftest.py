"""Shared fixtures: a scratch area on a real filesystem, and mount helpers."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import pytest
from hypothesis import settings

# CI runs the same examples every time (a failure there is reproducible here
# with CI=true); interactive runs explore new ones.
settings.register_profile("ci", derandomize=True, database=None, print_blob=True)
if os.environ.get("CI"):
    settings.load_profile("ci")

from tests.support.mounting import kernel_overlay_available

# Layers must live on a filesystem with xattrs and mknod (not tmpfs-dependent
# sizes); /var/tmp is on disk on Debian. Override with LAYERFS_TEST_TMP.
_SCRATCH = os.environ.get("LAYERFS_TEST_TMP", "/var/tmp")


@pytest.fixture
def scratch():
    """A fresh directory on a disk filesystem, removed afterwards."""
    path = Path(tempfile.mkdtemp(prefix="layerfs-test-", dir=_SCRATCH))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def needs_kernel_overlay():
    reason = kernel_overlay_available()
    if reason is not None:
        pytest.skip(f"kernel overlay comparison impossible: {reason}")


@pytest.fixture
def needs_root():
    if os.geteuid() != 0:
        pytest.skip("needs root (device nodes, foreign owners, trusted.* xattrs)")
