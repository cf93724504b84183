"""Fixtures of the registry tests: images built once, registries started per module or
per test (always stopped), and a runner for the layerfs command line."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Iterator

import pytest

from .images import MULTI_LAYER, big_layer, push, small_layers, umoci_image
from .servers import REGISTRY_BINARY, RegistryServer

REPO_ROOT = Path(__file__).resolve().parents[2]
SCRATCH = os.environ.get("LAYERFS_TEST_TMP", "/var/tmp")
BIG_SIZE = 24 << 20

_missing = [tool for tool in ("skopeo", "umoci") if shutil.which(tool) is None]
pytestmark_reason = (
    "docker-registry is not installed (apt-get install docker-registry)"
    if REGISTRY_BINARY is None else
    f"{', '.join(_missing)} not installed" if _missing else None)


def _mkdtemp(prefix: str) -> Path:
    return Path(tempfile.mkdtemp(prefix=prefix, dir=SCRATCH))


@pytest.fixture(scope="session")
def layouts() -> Iterator[Path]:
    """An OCI layout with the test images: multi (3 layers), big (one 24 MiB layer),
    many (6 layers of 512 KiB)."""
    if pytestmark_reason is not None:
        pytest.skip(pytestmark_reason)
    work = _mkdtemp("layerfs-regimg-")
    layout = work / "layout"
    try:
        umoci_image(layout, "multi", MULTI_LAYER, work)
        umoci_image(layout, "big", big_layer(BIG_SIZE), work)
        umoci_image(layout, "many", small_layers(6), work)
        yield layout
    finally:
        shutil.rmtree(work, ignore_errors=True)


@pytest.fixture(scope="module")
def registry(layouts: Path) -> Iterator[RegistryServer]:
    """A plain registry holding test/multi:v1, test/big:v1, test/many:v1."""
    work = _mkdtemp("layerfs-registry-")
    try:
        with RegistryServer(work) as server:
            for tag in ("multi", "big", "many"):
                push(layouts, tag, f"{server.host}/test/{tag}:v1")
            yield server
    finally:
        shutil.rmtree(work, ignore_errors=True)


@pytest.fixture
def fresh_registry(layouts: Path) -> Iterator[RegistryServer]:
    """A registry of this test alone (it may be stopped, restarted or tampered with)."""
    work = _mkdtemp("layerfs-registry-")
    try:
        with RegistryServer(work) as server:
            for tag in ("multi", "big"):
                push(layouts, tag, f"{server.host}/test/{tag}:v1")
            yield server
    finally:
        shutil.rmtree(work, ignore_errors=True)


@pytest.fixture
def workdir() -> Iterator[Path]:
    path = _mkdtemp("layerfs-regtest-")
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def layerfs_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(REPO_ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    env.update(extra or {})
    return env


def run(*args: str, env: dict[str, str] | None = None, timeout: float = 300
        ) -> subprocess.CompletedProcess:
    """``layerfs ARGS`` to completion."""
    return subprocess.run([sys.executable, "-m", "layerfs", *args], env=layerfs_env(env),
                          capture_output=True, text=True, timeout=timeout)


def start(*args: str, env: dict[str, str] | None = None) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "layerfs", *args], env=layerfs_env(env),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
