"""layerfs/mountplan.py: what the user typed becomes a mount plan, without mounting.

Plans are built from every input form (the real docker-save fixtures, as archives and
through the ``docker-archive:`` transport; a directory of layers; ``--layer`` dirs;
``-o lowerdir=``), with and without an upper dir; :meth:`MountPlan.open` builds the
index a mount would serve, which is read here directly (no FUSE). Registry specs are
planned against a real registry in tests/registry/test_mountplan.py.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from layerfs.deferred import DeferredIndex
from layerfs.errors import ImageError, UsageError
from layerfs.idmap import IdMap
from layerfs.index import PathIndex
from layerfs.mountplan import (
    ImageRequest,
    IndexKind,
    mount_source,
    open_image,
    plan_mount,
    plan_namespace_mount,
    plan_overlay_mount,
    read_image,
)
from layerfs.options import parse_options
from layerfs.registry.pull import RemoteOptions
from tests.explore.images import layer_dirs_image
from tests.support.layerspec import File, Whiteout, materialize

FIXTURES = Path("/work/shared/fixtures/real")
if not FIXTURES.is_dir():
    FIXTURES = Path(__file__).resolve().parents[2].parent / "shared" / "fixtures" / "real"
needs_fixtures = pytest.mark.skipif(not FIXTURES.is_dir(),
                                    reason="shared/fixtures/real is not present")

# fixture, reference, the merged view's paths (as in tests/images/test_real_fixtures.py)
REAL = [
    ("hello-world-v25.tar", None, {"hello"}),
    ("test_link.tar", "test_image_1", {"bar", "foo"}),
    ("test_link.tar", "bazel/v1/tarball:test_image_3", {"bar", "foo", "test"}),
    ("whiteout_image.tar", None, {"bar.txt"}),
    ("whiteout_dir.tar", None, {"a", "a/baz", "b", "b/bar"}),
    ("almostempty.tar", None, {"emptyfile"}),
    ("emptyLayer.tar", None, {"tmp", "tmp/foo"}),
]


def paths(index: PathIndex) -> set[str]:
    return {os.fsdecode(path) for path, _node in index.walk() if path}


def request(spec: str | Path, tmp_path: Path, **kwargs) -> ImageRequest:
    return ImageRequest(spec=str(spec), cache_dir=str(tmp_path / "cache"), quiet=True,
                        **kwargs)


@needs_fixtures
@pytest.mark.parametrize("transport", ["", "docker-archive:"], ids=["path", "transport"])
@pytest.mark.parametrize("fixture, ref, expected", REAL,
                         ids=[f"{f}:{r}" if r else f for f, r, _ in REAL])
def test_a_plan_of_each_real_image(tmp_path, fixture, ref, expected, transport):
    spec = f"{transport}{FIXTURES / fixture}"
    plan = plan_mount(request(spec, tmp_path, image_ref=ref), parse_options([]))
    assert plan.kind is IndexKind.LAYERS and plan.upperdir is None
    assert plan.fsname == mount_source(spec) and plan.dirs_made() == []
    index, upper = plan.open()
    assert isinstance(index, PathIndex) and upper is None
    assert paths(index) == expected


@needs_fixtures
def test_read_image_does_not_unpack(tmp_path):
    described = read_image(request(FIXTURES / "whiteout_dir.tar", tmp_path))
    assert len(described.layers) == 4 and not (tmp_path / "cache").exists()


@needs_fixtures
def test_format_and_image_reference_reach_the_reader(tmp_path):
    archive = str(FIXTURES / "test_link.tar")
    with pytest.raises(ImageError):  # two images: one must be named
        open_image(request(archive, tmp_path))
    with pytest.raises(UsageError, match="--format oci"):
        open_image(request(f"docker-archive:{archive}", tmp_path, form="oci"))
    image = open_image(request(archive, tmp_path, form="docker-save",
                               image_ref="test_image_1"))
    assert len(image.layers) >= 1


def test_a_directory_of_layers_explicit_layers_and_lowerdir(tmp_path):
    image = layer_dirs_image(tmp_path / "image")
    from_image = plan_mount(request(image, tmp_path), parse_options([]))
    dirs = [str(image / f"l{n}") for n in range(3)]
    from_layers = plan_mount(None, parse_options([]), layers=dirs)
    lowerdir = plan_mount(None, parse_options([f"lowerdir={':'.join(reversed(dirs))}"]))
    assert [layer.root for layer in from_layers.layers] == dirs
    assert [layer.root for layer in lowerdir.layers] == dirs  # the kernel's order: top first
    assert from_layers.fsname == "layerfs"
    seen = {paths(plan.open()[0]).__repr__() for plan in (from_image, from_layers, lowerdir)}
    assert len(seen) == 1  # one merged tree, whichever way the layers were named


def test_an_upper_dir_plan_creates_nothing_until_opened(tmp_path):
    lower = materialize({b"etc/hosts": File(b"h"), b"gone": File(b"g")}, tmp_path / "l0")
    upper = materialize({b"new": File(b"n"), b"gone": Whiteout()}, tmp_path / "upper", "oci")
    plan = plan_mount(None, parse_options([]), layers=[str(lower)], upper=str(upper))
    work = tmp_path / ".upper.work"
    assert plan.kind is IndexKind.UPPER and plan.dirs_made() == [str(work), str(work / "work")]
    assert not work.exists()
    index, writer = plan.open()
    assert writer is not None and work.is_dir()
    assert paths(index) >= {"etc", "etc/hosts"}


def test_a_read_only_upper_is_a_top_layer(tmp_path):
    lower = materialize({b"a": File(b"a")}, tmp_path / "l0")
    upper = materialize({b"b": File(b"b")}, tmp_path / "upper")
    plan = plan_mount(None, parse_options(["ro"]), layers=[str(lower)], upper=str(upper))
    assert plan.kind is IndexKind.UPPER and plan.read_only and plan.dirs_made() == []
    index, writer = plan.open()
    assert writer is None and paths(index) == {"a", "b"}
    assert not (tmp_path / ".upper.work").exists()


def test_options_reach_the_engine(tmp_path):
    lower = materialize({b"a": File(b"a")}, tmp_path / "l0")
    options = parse_options(["engine=pyfuse3,noxattrs,allow_other,squash_to_root"])
    plan = plan_mount(None, options, layers=[str(lower)])
    served = plan.serve_options()
    assert served["engine"] == "pyfuse3" and served["xattrs"] == "off"
    assert "allow_other" in served["extra_options"]
    assert served["ids"].squash_uid == 0
    assert plan_mount(None, options, layers=[str(lower)], engine="native").engine == "native"
    assert plan_mount(None, parse_options([]), layers=[str(lower)],
                      as_me=True).ids.squash_uid == os.getuid()


@pytest.mark.parametrize("arguments, message", [
    ({"layers": ["/a"], "options": ["lowerdir=/b"]}, "either with --layer or with -o lowerdir="),
    ({"image": "/img", "layers": ["/a"]}, "give only the MOUNTPOINT"),
    ({}, "mount needs IMAGE and MOUNTPOINT"),
    ({"layers": ["/a"], "upper": "/u", "options": ["upperdir=/u2,workdir=/w"]},
     "either with --upper/--work or with -o"),
    ({"layers": ["/a"], "work": "/w"}, "a work dir needs an upper dir"),
    ({"layers": ["/a"], "options": ["upperdir=/u"]}, "-o upperdir= needs -o workdir="),
])
def test_usage_errors_come_before_the_image_is_opened(tmp_path, arguments, message):
    image = arguments.get("image")
    with pytest.raises(UsageError, match=message):
        # no such image or layer exists: the usage error must come first
        plan_mount(request(image, tmp_path) if image else None,
                   parse_options(arguments.get("options", [])),
                   layers=arguments.get("layers", []), upper=arguments.get("upper"),
                   work=arguments.get("work"))
    assert not (tmp_path / "cache").exists()


def test_a_registry_spec_goes_to_the_registry(tmp_path):
    spec = "docker://127.0.0.1:9/no/such:v1"  # the discard port: nothing listens
    assert request(spec, tmp_path).is_remote and not request("oci:x", tmp_path).is_remote
    with pytest.raises(Exception) as raised:
        read_image(request(spec, tmp_path, remote=RemoteOptions(retries=0, pull="always")))
    assert "127.0.0.1:9" in str(raised.value)


def test_overlay_plan(tmp_path):
    lower = materialize({b"a": File(b"a")}, tmp_path / "l0")
    with pytest.raises(UsageError, match="no lowerdir="):
        plan_overlay_mount(parse_options([]), source="s", subtype="layerfs-overlay")
    with pytest.raises(UsageError, match="upperdir= needs workdir="):
        plan_overlay_mount(parse_options([f"lowerdir={lower},upperdir={tmp_path}"]),
                           source="s", subtype="layerfs-overlay")
    read_only = plan_overlay_mount(
        parse_options([f"lowerdir={lower},upperdir={tmp_path / 'u'},ro"]), source="s",
        subtype="layerfs-overlay")
    assert read_only.kind is IndexKind.UPPER and read_only.read_only
    plan = plan_overlay_mount(parse_options([f"lowerdir={lower},userxattr"]),
                              flags={"nosuid"}, source="src", subtype="layerfs-overlay")
    served = plan.serve_options()
    assert plan.kind is IndexKind.LAYERS and plan.redirect_dir is None  # userxattr: none
    assert served["fsname"] == "src" and served["subtype"] == "layerfs-overlay"
    assert "nosuid" in served["extra_options"]
    assert ("allow_other" in served["extra_options"]) == (os.geteuid() == 0)


def test_namespace_plan_writes_user_xattrs(tmp_path):
    lower = materialize({b"a": File(b"a")}, tmp_path / "l0")
    image_layers = plan_mount(None, parse_options([]), layers=[str(lower)]).layers
    plan = plan_namespace_mount(image_layers, parse_options([]), upper=str(tmp_path / "u"),
                                work=str(tmp_path / "w"), ids=IdMap())
    assert plan.kind is IndexKind.UPPER and plan.userxattr is True
    (tmp_path / "u").mkdir()
    (tmp_path / "w").mkdir()
    index, writer = plan.open()
    assert writer is not None and writer.disk.userxattr
    assert plan_namespace_mount(image_layers, parse_options([]), upper=None, work=None,
                                ids=plan.ids).open()[1] is None


def test_a_deferred_plan_serves_a_deferred_index(tmp_path):
    """A lazy image's layers still arriving make a deferred, read-only mount; with an
    upper dir the plan waits for them instead. PendingLayers is a Protocol: one whose
    layers are all there already stands for a background pull here."""
    lower = materialize({b"a": File(b"a")}, tmp_path / "l0")
    layers = plan_mount(None, parse_options([]), layers=[str(lower)]).layers

    class Arrived:
        description = "1 layer"
        directory = str(tmp_path)
        waited = 0

        def wait(self, *, quiet: bool = True):
            Arrived.waited += 1
            return layers

        def cancel(self) -> None:
            pass

    from layerfs.mountplan import MountPlan
    deferred = MountPlan(layers=layers, kind=IndexKind.DEFERRED, pending=Arrived())
    index, writer = deferred.open()
    assert isinstance(index, DeferredIndex) and writer is None and Arrived.waited == 0
    (tmp_path / "u").mkdir()
    upper = MountPlan(layers=layers, kind=IndexKind.UPPER, pending=Arrived(),
                      upperdir=str(tmp_path / "u"))
    index, writer = upper.open()
    assert Arrived.waited == 1 and paths(index) == {"a"} and writer is not None
