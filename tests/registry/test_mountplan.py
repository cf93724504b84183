"""Mount plans of registry images (layerfs/mountplan.py), against a real registry, without
mounting: a pull plans a read-only index of the pulled layers, ``--lazy`` a deferred one
that is live before the layers are there, and an upper dir waits for them."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path
from typing import Iterator

import pytest

from layerfs.deferred import DeferredIndex
from layerfs.index import PathIndex
from layerfs.mountplan import ImageRequest, IndexKind, plan_mount, read_image
from layerfs.options import parse_options
from layerfs.registry.pull import RemoteOptions

from .conftest import SCRATCH
from .images import unpack_reference


@pytest.fixture(scope="module")
def expected(layouts: Path) -> Iterator[set[str]]:
    work = Path(tempfile.mkdtemp(prefix="layerfs-plan-umoci-", dir=SCRATCH))
    try:
        root = unpack_reference(layouts, "multi", work / "umoci")
        yield {os.path.relpath(os.path.join(top, name), root)
               for top, dirs, files in os.walk(root) for name in dirs + files}
    finally:
        shutil.rmtree(work, ignore_errors=True)


def paths(index) -> set[str]:
    return {os.fsdecode(path) for path, _node in index.walk() if path}


def request(registry, workdir: Path, *, lazy: bool = False) -> ImageRequest:
    return ImageRequest(spec=f"docker://{registry.host}/test/multi:v1",
                        cache_dir=str(workdir / "cache"), quiet=True,
                        remote=RemoteOptions(insecure=True, lazy=lazy))


def test_a_pulled_image_plans_its_layers(registry, expected, workdir):
    plan = plan_mount(request(registry, workdir), parse_options([]))
    assert plan.kind is IndexKind.LAYERS and len(plan.layers) == 3
    assert plan.fsname == f"docker://{registry.host}/test/multi:v1"
    index, upper = plan.open()
    assert upper is None and paths(index) == expected


def test_inspect_reads_the_manifest_alone(registry, workdir):
    described = read_image(request(registry, workdir))
    assert len(described.layers) == 3 and not (workdir / "cache" / "layers").exists()


def test_a_lazy_image_plans_a_deferred_index(registry, expected, workdir):
    plan = plan_mount(request(registry, workdir, lazy=True), parse_options([]))
    assert plan.kind is IndexKind.DEFERRED and plan.pending is not None
    try:
        index, upper = plan.open()
        assert isinstance(index, DeferredIndex) and upper is None
        assert paths(PathIndex(plan.pending.wait())) == expected
    finally:
        plan.pending.cancel()


def test_a_lazy_image_under_an_upper_dir_waits_for_its_layers(registry, expected, workdir):
    upper = workdir / "upper"
    upper.mkdir()
    plan = plan_mount(request(registry, workdir, lazy=True), parse_options([]),
                      upper=str(upper))
    assert plan.kind is IndexKind.UPPER
    try:
        index, writer = plan.open()
        assert writer is not None and paths(index) == expected
    finally:
        assert plan.pending is not None
        plan.pending.cancel()
