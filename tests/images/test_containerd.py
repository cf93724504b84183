"""containerd's image store (overlayfs snapshotter) written by a real containerd.

A throw-away containerd (own root, state and socket under a temp dir, the CRI plugin
off) imports the real docker-save fixtures and an image built with umoci, which it
unpacks into its overlayfs snapshotter. It keeps running while layerfs reads its
databases (no lock is needed). Its root is made the ``containerd/daemon`` of a Docker
data root, as when dockerd runs its own containerd, so that form is tested too.
Every mount is compared with a layerfs mount of the same image's docker-save archive,
with the kernel overlay over the same snapshot dirs, and for the built image with
``umoci unpack``. Also: references, namespaces, a Docker root with two stores, and
corrupt or hostile databases (one-line errors; these need neither root nor containerd).
"""

from __future__ import annotations

import contextlib
import gzip
import json
import os
import shutil
import subprocess
import tempfile
import threading
from pathlib import Path
from typing import Iterator

import pytest

from layerfs.images import read_image
from tests.support.daemons import throwaway_daemon

from .builtimages import have, run, umoci_reference
from .mounting import mounted, run_layerfs, snapshot
from .stores import docker_root, oci_image
from .test_daemon_stores import build_daemon_friendly_layout, compare_with_kernel
from .test_real_fixtures import FIXTURES

DATA = Path(__file__).parent / "data" / "containerd"
SNAPSHOTTER_DIR = "io.containerd.snapshotter.v1.overlayfs"
METADATA_DB = "io.containerd.metadata.v1.bolt/meta.db"

# archive, reference in the archive, the name containerd gives the image
REAL = [
    ("whiteout_image.tar", None, "docker.io/bazel/pkg/v1/mutate:whiteout_image"),
    ("whiteout_dir.tar", None, "localhost:5000/whiteout:latest"),
    ("test_link.tar", "test_image_1", "docker.io/bazel/v1/tarball:test_image_1"),
    ("test_link.tar", "bazel/v1/tarball:test_image_3", "docker.io/bazel/v1/tarball:test_image_3"),
    ("almostempty.tar", None, "docker.io/library/emptyimage:latest"),
]
BUILT = "layerfs/containerd-test:v3"
CONFIG = """version = 2
root = "{root}"
state = "{state}"
disabled_plugins = ["io.containerd.grpc.v1.cri", "io.containerd.snapshotter.v1.btrfs",
  "io.containerd.snapshotter.v1.zfs", "io.containerd.snapshotter.v1.devmapper",
  "io.containerd.snapshotter.v1.aufs", "io.containerd.internal.v1.tracing",
  "io.containerd.tracing.processor.v1.otlp"]
[grpc]
  address = "{socket}"
[ttrpc]
  address = "{socket}.ttrpc"
[debug]
  address = ""
[metrics]
  address = ""
"""

INDEXED = "layerfs/containerd-index:v3"
# The archive's own name for the manifest: it must differ from INDEXED, else ctr's import
# writes both image records under one name, the manifest's last, and the index blob,
# then referenced by nothing, is garbage-collected while ctr still unpacks it
# ("content digest sha256:...: not found", depending on when containerd's GC runs).
INDEXED_MANIFEST = "layerfs/containerd-manifest:v3"


def _cannot_run() -> str | None:
    if os.geteuid() != 0:
        return "containerd needs root"
    if not have("containerd") or not have("ctr"):
        return "containerd/ctr are not installed (Debian package containerd)"
    if not FIXTURES.is_dir():
        return "shared/fixtures/real is not present"
    if not os.path.exists("/dev/fuse"):
        return "no /dev/fuse"
    return None


@contextlib.contextmanager
def containerd(base: Path, root: Path) -> Iterator[list[str]]:
    """A containerd with its own root, state and socket; stopped and its mounts gone at the end."""
    state, socket = base / "state", base / "c.sock"
    config = base / "config.toml"
    config.write_text(CONFIG.format(root=root, state=state, socket=socket))
    client = ["ctr", "--address", str(socket)]
    with throwaway_daemon("containerd", ["containerd", "--config", str(config)],
                          [*client, "version"], base):
        yield client


def ctr(client: list[str], namespace: str, *args: str) -> str:
    result = subprocess.run([*client, "-n", namespace, *args], capture_output=True, text=True,
                            timeout=300)
    assert result.returncode == 0, f"ctr {' '.join(args)}: {result.stderr.strip()}"
    return result.stdout


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> Iterator[dict]:
    """A Docker-root-like dir whose containerd/daemon a live containerd writes:
    namespace 'default' holds the real fixtures, 'moby' the built image and one fixture."""
    reason = _cannot_run()
    if reason is not None:
        pytest.skip(reason)
    base = Path(tempfile.mkdtemp(prefix="lfc", dir="/var/tmp"))  # short: unix socket paths
    work = tmp_path_factory.mktemp("containerd-image")
    try:
        docker = base / "docker"
        root = docker / "containerd" / "daemon"
        with containerd(base, root) as client:
            for archive in sorted({name for name, _ref, _tagged in REAL}):
                ctr(client, "default", "image", "import", str(FIXTURES / archive))
            built = None
            if have("umoci") and have("skopeo"):
                layout = build_daemon_friendly_layout(work)
                run("skopeo", "copy", "-q", f"oci:{layout}:v3",
                    f"docker-archive:{work}/built.tar:{BUILT}")
                ctr(client, "moby", "image", "import", str(work / "built.tar"))
                # an OCI archive kept with its index: the image's target is an index
                run("skopeo", "copy", "-q", f"oci:{layout}:v3",
                    f"oci-archive:{work}/built-oci.tar:{INDEXED_MANIFEST}")
                ctr(client, "moby", "image", "import", "--index-name", INDEXED,
                    "--base-name", INDEXED_MANIFEST.partition(":")[0],
                    str(work / "built-oci.tar"))
                built = {"tar": work / "built.tar",
                         "reference": snapshot(umoci_reference(layout, "v3", work))}
            ctr(client, "moby", "image", "import", str(FIXTURES / "whiteout_dir.tar"))
            listed = ctr(client, "default", "images", "ls", "-q").split()
            assert sorted(listed) == sorted(tagged for _a, _r, tagged in REAL)
            yield {"docker": docker, "root": root, "client": client, "built": built,
                   "work": work}
    finally:
        shutil.rmtree(base, ignore_errors=True)


def _tree(spec: str, mountpoint: Path, *args: str) -> dict:
    with mounted(spec, mountpoint, *args) as root:
        return snapshot(root)


@pytest.mark.parametrize("archive, archive_ref, name", REAL, ids=[r[2] for r in REAL])
def test_real_images_as_their_archives_and_the_kernel_show_them(store, tmp_path, archive,
                                                                archive_ref, name):
    spec = f"{store['root']}:default/{name}"
    seen = _tree(spec, tmp_path / "mnt")
    tar_spec = str(FIXTURES / archive) + (f":{archive_ref}" if archive_ref else "")
    assert seen == _tree(tar_spec, tmp_path / "mnt2", "--cache-dir", str(tmp_path / "cache"))
    differences = compare_with_kernel(spec, tmp_path / "mnt", tmp_path)
    if len(read_image(spec).layers) == 1:  # the kernel needs a spare lower dir: the root is
        differences = [d for d in differences  # then a merged dir, which it counts 1 link
                       if not (d.path == b"" and d.property == "nlink")]
    assert not differences, "\n".join(map(str, differences))


def test_built_image_equals_umoci_unpack(store, tmp_path):
    if store["built"] is None:
        pytest.skip("umoci/skopeo missing")
    spec = f"{store['docker']}:{BUILT}"  # a Docker root: containerd/daemon, namespace moby
    assert read_image(spec).form == "containerd"
    assert _tree(spec, tmp_path / "mnt") == store["built"]["reference"]
    differences = compare_with_kernel(spec, tmp_path / "mnt", tmp_path)
    assert not differences, "\n".join(map(str, differences))


def test_layers_are_the_snapshot_dirs(store):
    plan = read_image(f"{store['root']}:default/docker.io/bazel/v1/tarball:test_image_3")
    assert plan.form == "containerd" and len(plan.layers) == 2
    for layer in plan.layers:
        path = Path(layer.directory)
        assert path.name == "fs" and path.parent.parent.name == "snapshots"
        assert path.parent.parent.parent == store["root"] / SNAPSHOTTER_DIR
        assert layer.facts.snapshot_key.startswith("default/")
    # the top layer's snapshot id is what `ctr snapshots` reports for its chainID
    info = ctr(store["client"], "default", "snapshots", "info", plan.layers[-1].chain_id)
    assert plan.layers[-1].chain_id in info


def test_references(store, tmp_path):
    root = store["root"]
    name = "docker.io/bazel/v1/tarball:test_image_3"
    target = ctr(store["client"], "default", "images", "ls")
    digest = next(line.split()[2] for line in target.splitlines() if line.startswith(name + " "))
    config = read_image(f"{root}:default/{name}").config
    expected = read_image(f"{root}:default/{name}").layers[-1].directory
    manifest = json.loads(ctr(store["client"], "default", "content", "get", digest))
    config_digest = manifest["config"]["digest"]
    for ref in (f"default/{name}", name, "bazel/v1/tarball:test_image_3", digest,
                digest[7:19], config_digest, config_digest[7:19]):
        assert read_image(f"{root}:{ref}").layers[-1].directory == expected, ref
        assert read_image(str(root), image_ref=ref).config == config
    # whiteout_dir sits in both namespaces: by name it is ambiguous, listing both
    result = run_layerfs("inspect", f"{root}:localhost:5000/whiteout:latest")
    assert result.returncode == 1 and "ambiguous" in result.stderr
    assert "default/localhost:5000/whiteout:latest" in result.stderr
    assert "moby/localhost:5000/whiteout:latest" in result.stderr
    result = run_layerfs("inspect", f"{root}:nosuch:image")
    assert result.returncode == 1 and len(result.stderr.strip().splitlines()) == 1
    assert "no image 'nosuch:image'" in result.stderr and name in result.stderr
    # NAMESPACE/REF with a short name; the moby namespace's whiteout image
    assert read_image(f"{root}:default/test_image_3").layers[-1].directory == expected
    assert read_image(f"{root}:moby/localhost:5000/whiteout:latest") \
        .layers[-1].facts.snapshot_key.startswith("moby/")
    # through the Docker root only the moby namespace is seen: unambiguous there
    plan = read_image(f"{store['docker']}:localhost:5000/whiteout:latest")
    assert plan.layers[-1].facts.snapshot_key.startswith("moby/")


def test_a_name_whose_first_component_is_a_namespace(store):
    """`layerfs/test:latest` is a name, even when a namespace is called `layerfs` (it was
    read as NAMESPACE/REF); NAMESPACE/REF still works, and the list of available images
    of a containerd root names each image's namespace."""
    client, root = store["client"], store["root"]
    ctr(client, "layerfs", "image", "import", str(FIXTURES / "almostempty.tar"))
    ctr(client, "moby", "image", "tag", "localhost:5000/whiteout:latest",
        "docker.io/layerfs/test:latest")
    try:
        plan = read_image(f"{root}:layerfs/test:latest")
        assert plan.layers[-1].facts.snapshot_key.startswith("moby/")
        assert read_image(f"{root}:layerfs/emptyimage").layers[-1].facts.snapshot_key \
            .startswith("layerfs/")
        result = run_layerfs("inspect", f"{root}:nosuch")
        assert result.returncode == 1
        assert "layerfs/docker.io/library/emptyimage:latest" in result.stderr
        assert "moby/docker.io/layerfs/test:latest" in result.stderr
    finally:
        ctr(client, "moby", "image", "rm", "docker.io/layerfs/test:latest")
        ctr(client, "layerfs", "image", "rm", "docker.io/library/emptyimage:latest")


def test_reading_while_containerd_commits(store):
    """containerd holds its databases' exclusive lock and commits all along: every read
    sees one whole transaction (a commit meanwhile means reading again)."""
    client, name = store["client"], "docker.io/bazel/v1/tarball:test_image_3"
    stop = threading.Event()

    def churn() -> None:
        count = 0
        while not stop.is_set():
            count += 1
            subprocess.run([*client, "-n", "default", "image", "tag", name, f"churn/x:{count}"],
                           capture_output=True)
            subprocess.run([*client, "-n", "default", "image", "rm", f"churn/x:{count}"],
                           capture_output=True)

    writer = threading.Thread(target=churn)
    writer.start()
    try:
        directories = {tuple(layer.directory for layer in
                             read_image(f"{store['root']}:default/{name}").layers)
                       for _ in range(40)}
    finally:
        stop.set()
        writer.join()
    assert len(directories) == 1


def test_inspect(store):
    result = run_layerfs("inspect", "--json", f"{store['root']}:default/localhost:5000/whiteout:latest")
    assert result.returncode == 0, result.stderr
    assert '"form": "containerd"' in result.stdout and SNAPSHOTTER_DIR in result.stdout


def test_image_target_is_an_index(store, tmp_path):
    if store["built"] is None:
        pytest.skip("umoci/skopeo missing")
    listed = ctr(store["client"], "moby", "images", "ls")
    types = {line.split()[0]: line.split()[1] for line in listed.splitlines()[1:]}
    assert types[INDEXED] == "application/vnd.oci.image.index.v1+json", listed
    assert _tree(f"{store['docker']}:{INDEXED}", tmp_path / "mnt") == store["built"]["reference"]


def test_docker_root_with_both_stores(store, tmp_path):
    """The overlay2 store holds one image, the containerd store others: each is found where
    it is; a name in both with different content is ambiguous until --format chooses.
    (Last of the tests of the shared store: it adds an overlay2 store for a while.)"""
    docker = store["docker"]
    layout = store["work"] / "layout"
    if not layout.is_dir():
        pytest.skip("umoci/skopeo missing")
    config, tars = oci_image(layout, "v1")
    try:
        docker_root(docker, config, tars, name="localhost:5000/whiteout:latest")
        assert read_image(f"{docker}:{BUILT}").form == "containerd"
        result = run_layerfs("inspect", f"{docker}:localhost:5000/whiteout:latest")
        assert result.returncode == 1 and "--format" in result.stderr, result.stderr
        assert read_image(f"{docker}:localhost:5000/whiteout:latest",
                          "docker-root").form == "docker-root"
        assert read_image(f"{docker}:localhost:5000/whiteout:latest",
                          "containerd").form == "containerd"
        assert _tree(f"{docker}:localhost:5000/whiteout:latest", tmp_path / "mnt",
                     "--format", "docker-root") == snapshot(umoci_reference(layout, "v1",
                                                                            tmp_path))
    finally:
        shutil.rmtree(docker / "image", ignore_errors=True)
        shutil.rmtree(docker / "overlay2", ignore_errors=True)


def test_image_not_unpacked(store, tmp_path):
    """An image whose content is there but whose layers are not unpacked: a clear error."""
    client = store["client"]
    ctr(client, "lazy", "image", "import", "--no-unpack", str(FIXTURES / "whiteout_image.tar"))
    result = run_layerfs("inspect", f"{store['root']}:lazy/docker.io/bazel/pkg/v1/mutate:whiteout_image")
    assert result.returncode == 1
    assert "not unpacked" in result.stderr and len(result.stderr.strip().splitlines()) == 1


# -- without a containerd: stores made of the committed databases --------------------------

def _fake_store(tmp_path: Path, meta: bytes) -> Path:
    root = tmp_path / "containerd"
    (root / SNAPSHOTTER_DIR / "snapshots").mkdir(parents=True)
    (root / "io.containerd.metadata.v1.bolt").mkdir()
    (root / "io.containerd.content.v1.content" / "blobs" / "sha256").mkdir(parents=True)
    (root / METADATA_DB).write_bytes(meta)
    (root / SNAPSHOTTER_DIR / "metadata.db").write_bytes(
        gzip.decompress((DATA / "metadata.db.gz").read_bytes()))
    return root


@pytest.mark.parametrize("damage", ["truncated", "garbage", "empty", "zeroed-root"])
def test_corrupt_meta_db_is_one_line(tmp_path, damage):
    meta = gzip.decompress((DATA / "meta.db.gz").read_bytes())
    meta = {"truncated": meta[:40000], "garbage": os.urandom(9000), "empty": b"",
            "zeroed-root": meta[:8192] + bytes(len(meta) - 8192)}[damage]
    root = _fake_store(tmp_path, meta)
    result = run_layerfs("inspect", str(root))
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "meta.db" in lines[0] and "Traceback" not in result.stderr, \
        result.stderr


def test_missing_content_blob_is_one_line(tmp_path):
    """The committed databases list images whose blobs are not here."""
    root = _fake_store(tmp_path, gzip.decompress((DATA / "meta.db.gz").read_bytes()))
    result = run_layerfs("inspect", f"{root}:docker.io/bazel/v1/tarball:test_image_3")
    assert result.returncode == 1
    assert "missing" in result.stderr and len(result.stderr.strip().splitlines()) == 1


def test_docker_root_without_a_store_points_at_containerd(tmp_path):
    """dockerd with the containerd image store keeps images in the system containerd."""
    for name in ("containers", "volumes", "network", "buildkit"):
        (tmp_path / "docker" / name).mkdir(parents=True)
    result = run_layerfs("inspect", str(tmp_path / "docker"))
    assert result.returncode == 1 and "/var/lib/containerd" in result.stderr, result.stderr
