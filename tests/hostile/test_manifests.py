"""Broken and hostile manifests, indexes and configs: ``layerfs inspect`` and ``layerfs mount``
each fail in one line naming the file, exit 1, no traceback, and touch nothing."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import pytest

from tests.images.tarbuild import d, f, gzipped, layer_tar

from . import rawtar
from .sandbox import Sandbox

TARS = [layer_tar([d("etc"), f("etc/hostname", b"base\n")]), layer_tar([f("app", b"app\n")])]


def sha(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def blob_path(layout: Path, digest: str) -> Path:
    return layout / "blobs" / "sha256" / digest.split(":", 1)[1]


def good_image(box: Sandbox) -> dict:
    return rawtar.oci_layout(box.image, [gzipped(t) for t in TARS], [sha(t) for t in TARS])


def rewrite_manifest(box: Sandbox, change) -> None:
    """Apply ``change`` to the manifest, store it under its new digest, point index.json at it."""
    index = json.loads((box.image / "index.json").read_text())
    manifest = json.loads(blob_path(box.image, index["manifests"][0]["digest"]).read_bytes())
    change(manifest)
    data = json.dumps(manifest).encode()
    index["manifests"][0]["digest"] = rawtar.put_blob(box.image, data)
    index["manifests"][0]["size"] = len(data)
    (box.image / "index.json").write_text(json.dumps(index))


def rewrite_config(box: Sandbox, change) -> None:
    index = json.loads((box.image / "index.json").read_text())
    manifest = json.loads(blob_path(box.image, index["manifests"][0]["digest"]).read_bytes())
    config = json.loads(blob_path(box.image, manifest["config"]["digest"]).read_bytes())
    change(config)
    data = json.dumps(config).encode()

    def point(m: dict) -> None:
        m["config"]["digest"] = rawtar.put_blob(box.image, data)
    rewrite_manifest(box, point)


def rewrite_index(box: Sandbox, change) -> None:
    index = json.loads((box.image / "index.json").read_text())
    change(index)
    (box.image / "index.json").write_text(json.dumps(index))


def _set(path: list, value):
    def change(document: dict) -> None:
        target = document
        for key in path[:-1]:
            target = target[key]
        target[path[-1]] = value
    return change


def _delete(path: list):
    def change(document: dict) -> None:
        target = document
        for key in path[:-1]:
            target = target[key]
        del target[path[-1]]
    return change


def _write(name: str, data: bytes):
    return lambda box: (box.image / name).write_bytes(data)


def _current_manifest(box: Sandbox) -> Path:
    index = json.loads((box.image / "index.json").read_text())
    return blob_path(box.image, index["manifests"][0]["digest"])


def _current_config(box: Sandbox) -> Path:
    manifest = json.loads(_current_manifest(box).read_bytes())
    return blob_path(box.image, manifest["config"]["digest"])


def _swap_content(locate, data: bytes):
    """Replace a blob's content in place (its name, the digest, no longer matches)."""
    return lambda box: locate(box).write_bytes(data)


def _nested_index_cycle(box: Sandbox) -> None:
    # An index blob whose only entry names itself: its name cannot be its own hash, so the
    # blob also fails verification; either way it must end, cleanly.
    fake = "sha256:" + "ab" * 32
    document = {"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json",
                "manifests": [{"mediaType": "application/vnd.oci.image.index.v1+json",
                               "digest": fake, "size": 1}]}
    blob_path(box.image, fake).write_text(json.dumps(document))
    rewrite_index(box, lambda index: index["manifests"][0].update(
        {"digest": fake, "mediaType": "application/vnd.oci.image.index.v1+json"}))


def _symlink_blob(target_of):
    def damage(box: Sandbox) -> None:
        manifest = json.loads(_current_manifest(box).read_bytes())
        path = blob_path(box.image, manifest["layers"][1]["digest"])
        path.unlink()
        path.symlink_to(target_of(box))
    return damage


def _symlink_blobs_dir(box: Sandbox) -> None:
    outside = box.canary / "blobs-copy"
    os.rename(box.image / "blobs" / "sha256", outside)
    (box.image / "blobs" / "sha256").symlink_to(outside)


def _enormous(name_of):
    def damage(box: Sandbox) -> None:
        path = name_of(box)
        with open(path, "wb") as out:
            out.write(b'{"schemaVersion": 2, "manifests": [' + b" " * 100)
            out.truncate(200 << 20)  # sparse: cheap to make, 200 MiB to read
    return damage


CASES = {
    # invalid JSON
    "index-not-json": (_write("index.json", b"{not json"), r"index\.json is not valid JSON"),
    "manifest-not-json": (lambda b: rewrite_index(b, _set(["manifests", 0, "digest"],
                                                          rawtar.put_blob(b.image, b"[1, 2"))),
                          r"blobs/sha256/[0-9a-f]{64} is not valid JSON"),
    "config-truncated": (lambda b: rewrite_manifest(b, _set(["config", "digest"], rawtar.put_blob(
        b.image, b'{"rootfs": {"diff_ids": ['))), r"blobs/sha256/[0-9a-f]{64} is not valid JSON"),
    "deeply-nested-json": (_write("index.json", b"[" * 200000 + b"]" * 200000),
                           r"index\.json is not valid JSON \(nested too deeply\)"),
    "index-invalid-utf8": (_write("index.json", b'{"manifests": "\xff\xfe"}'),
                           r"index\.json is not valid JSON"),
    # wrong types
    "index-is-a-list": (_write("index.json", b"[]"), r"index\.json is not a JSON object"),
    "manifests-is-a-string": (lambda b: rewrite_index(b, _set(["manifests"], "abc")),
                              r"index\.json: 'manifests' is not a list"),
    "descriptor-is-a-number": (lambda b: rewrite_index(b, _set(["manifests"], [42])),
                               r"index\.json lists no image manifests"),
    "digest-is-a-number": (lambda b: rewrite_index(b, _set(["manifests", 0, "digest"], 7)),
                           r"index\.json: descriptor 'digest' is not a string"),
    "annotations-is-a-list": (lambda b: rewrite_index(b, _set(["manifests", 0, "annotations"],
                                                              ["x"])),
                              r"index\.json: descriptor 'annotations' is not an object"),
    "layers-is-a-string": (lambda b: rewrite_manifest(b, _set(["layers"], "abc")),
                           r"manifest sha256:[0-9a-f]{64}: 'layers' is not a list"),
    "layer-is-a-number": (lambda b: rewrite_manifest(b, _set(["layers", 1], 5)),
                          r"manifest sha256:[0-9a-f]{64}: layer 2 is not an object"),
    "layer-size-is-a-string": (lambda b: rewrite_manifest(b, _set(["layers", 0, "size"], "big")),
                               r"layer 1: descriptor 'size' is not a number"),
    "config-is-a-string": (lambda b: rewrite_manifest(b, _set(["config"], "sha256:00")),
                           r"manifest sha256:[0-9a-f]{64}: 'config' is not an object"),
    "diff-ids-are-numbers": (lambda b: rewrite_config(b, _set(["rootfs", "diff_ids"], [1, 2])),
                             r"image config has no rootfs\.diff_ids list"),
    "rootfs-is-a-list": (lambda b: rewrite_config(b, _set(["rootfs"], [])),
                         r"image config has no rootfs\.diff_ids list"),
    # missing fields
    "no-config": (lambda b: rewrite_manifest(b, _delete(["config"])),
                  r"'config' is not an object"),
    "no-layers": (lambda b: rewrite_manifest(b, _delete(["layers"])), r"'layers' is not a list"),
    "no-diff-ids": (lambda b: rewrite_config(b, _delete(["rootfs"])),
                    r"image config has no rootfs\.diff_ids list"),
    "no-digest": (lambda b: rewrite_index(b, _delete(["manifests", 0, "digest"])),
                  r"index\.json: descriptor 'digest' is not a string"),
    "no-index": (lambda b: (b.image / "index.json").unlink(), r"index\.json is missing"),
    "diff-id-count": (lambda b: rewrite_config(b, _set(["rootfs", "diff_ids"], [sha(TARS[0])])),
                      r"manifest lists 2 layers, config 1 DiffIDs"),
    # digest mismatches
    "manifest-digest-mismatch": (_swap_content(_current_manifest, json.dumps(
        {"schemaVersion": 2, "config": {}, "layers": []}).encode()),
        r"manifest blob sha256:[0-9a-f]{64}: digest mismatch, the content is sha256:[0-9a-f]{64}"),
    "config-digest-mismatch": (_swap_content(_current_config, json.dumps(
        {"rootfs": {"diff_ids": []}}).encode()),
        r"config blob sha256:[0-9a-f]{64}: digest mismatch"),
    "layer-digest-mismatch": (lambda b: blob_path(b.image, json.loads(
        _current_manifest(b).read_bytes())["layers"][1]["digest"]).write_bytes(gzipped(TARS[1])
                                                                              + b"\0" * 10),
        r"layer 2 .*blob digest mismatch"),
    "diff-id-mismatch": (lambda b: rewrite_config(b, _set(["rootfs", "diff_ids", 1],
                                                          "sha256:" + "1" * 64)),
                         r"layer 2 .*DiffID mismatch: the config says sha256:1{64}"),
    # descriptors pointing outside blobs/
    "digest-dotdot": (lambda b: rewrite_index(b, _set(["manifests", 0, "digest"],
                                                      "sha256:../../canary/keep")),
                      r"descriptor: 'sha256:\.\./\.\./canary/keep' is not a valid digest"),
    "layer-digest-dotdot": (lambda b: rewrite_manifest(b, _set(["layers", 1, "digest"],
                                                               "sha256:../../../canary/keep")),
                            r"'sha256:\.\./\.\./\.\./canary/keep' is not a valid digest"),
    "unknown-algorithm": (lambda b: rewrite_index(b, _set(["manifests", 0, "digest"],
                                                          "md5:d41d8cd98f00b204e9800998ecf8427e")),
                          r"'md5:d41d8cd98f00b204e9800998ecf8427e' is not a valid digest"),
    "absolute-digest": (lambda b: rewrite_index(b, _set(["manifests", 0, "digest"],
                                                        "/etc/passwd")),
                        r"'/etc/passwd' is not a valid digest"),
    "symlinked-layer-blob": (_symlink_blob(lambda b: b.canary / "keep"),
                             r"blobs/sha256/[0-9a-f]{64} links outside the image"),
    "symlinked-layer-blob-relative": (_symlink_blob(lambda b: Path("../../../canary/keep")),
                                      r"links outside the image"),
    "symlinked-blobs-dir": (_symlink_blobs_dir, r"blobs/sha256 links outside the image"),
    # cycles and size
    "nested-index-cycle": (_nested_index_cycle, r"(refers back to itself|digest mismatch)"),
    "enormous-index": (_enormous(lambda b: b.image / "index.json"),
                       r"index\.json is larger than 32M"),
    "enormous-config": (_enormous(_current_config), r"larger than 32M"),
}


@pytest.mark.parametrize("case", list(CASES))
@pytest.mark.parametrize("command", ["inspect", "mount"])
def test_bad_manifest_fails_cleanly(sandbox: Sandbox, case: str, command: str) -> None:
    damage, pattern = CASES[case]
    good_image(sandbox)
    damage(sandbox)
    sandbox.seal()
    if command == "inspect":
        result = sandbox.run("inspect", str(sandbox.image))
    else:
        result = sandbox.mount()
    sandbox.refused(result, pattern)


ODDITIES = {
    "history-is-a-string": lambda b: rewrite_config(b, _set(["history"], "oops")),
    "history-entries-are-numbers": lambda b: rewrite_config(b, _set(["history"], [1, 2])),
    "platform-is-a-string": lambda b: rewrite_index(b, _set(["manifests", 0, "platform"], "x")),
    "unknown-fields": lambda b: rewrite_manifest(b, _set(["x-extra"], {"a": [1]})),
}


@pytest.mark.parametrize("case", list(ODDITIES))
def test_harmless_oddities_are_accepted(sandbox: Sandbox, case: str) -> None:
    good_image(sandbox)
    ODDITIES[case](sandbox)
    sandbox.seal()
    result = sandbox.run("inspect", str(sandbox.image))
    assert result.returncode == 0 and not result.stderr, result.stderr
    sandbox.assert_outside_untouched()


def test_docker_archive_paths_cannot_leave_the_archive_dir(sandbox: Sandbox) -> None:
    image = sandbox.image
    image.mkdir()
    config = json.dumps({"rootfs": {"type": "layers", "diff_ids": [sha(TARS[0])]}}).encode()
    (image / "config.json").write_bytes(config)
    (image / "layer.tar").write_bytes(TARS[0])
    for config_path, layer_path, pattern in [
        (str(sandbox.canary / "keep"), "layer.tar", r"'.*canary/keep' is outside the image"),
        ("../canary/keep", "layer.tar", r"'\.\./canary/keep' is outside the image"),
        ("config.json", str(sandbox.canary / "keep"), r"is outside the image"),
        ("config.json", "../canary/etc/passwd", r"'\.\./canary/etc/passwd' is outside"),
        (["x"], "layer.tar", r"manifest\.json: 'Config' is not a string"),
    ]:
        manifest = [{"Config": config_path, "RepoTags": ["x:1"], "Layers": [layer_path]}]
        (image / "manifest.json").write_text(json.dumps(manifest))
        sandbox.seal()
        sandbox.refused(sandbox.run("inspect", str(image)), pattern)
        sandbox.refused(sandbox.mount(), pattern)


@pytest.mark.parametrize("link, pattern", [
    ("/etc/passwd", r"links to /etc/passwd, outside the archive"),
    ("../../../canary/keep", r"links to \.\./\.\./\.\./canary/keep, outside the archive"),
])
def test_archive_members_cannot_link_outside(sandbox: Sandbox, link: str, pattern: str) -> None:
    import shutil
    import tarfile
    layout = sandbox.root / "layout"
    built = rawtar.oci_layout(layout, [gzipped(t) for t in TARS], [sha(t) for t in TARS])
    victim = "blobs/sha256/" + built["manifest"]["layers"][1]["digest"].split(":")[1]
    archive = sandbox.root / "image.tar"
    with tarfile.open(archive, "w") as tar:
        for path in sorted(layout.rglob("*")):
            name = path.relative_to(layout).as_posix()
            if name == victim:
                info = tarfile.TarInfo(name)
                info.type, info.linkname = tarfile.SYMTYPE, link
                tar.addfile(info)
            else:
                tar.add(path, arcname=name, recursive=False)
    shutil.rmtree(layout)
    sandbox.image = archive
    sandbox.seal()
    sandbox.refused(sandbox.mount(), pattern)
