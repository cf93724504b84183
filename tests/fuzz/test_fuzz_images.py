"""Fuzzing the image readers (OCI index/manifest/config, docker save manifest.json, legacy
repositories, skopeo dir:), references, platforms, digests, entry names and whiteout rules.

Each reader gets a random JSON document in one place of an otherwise valid image and must
return a plan or raise a LayerfsError; the pure parsers must answer or raise a
LayerfsError (UsageError included), nothing else."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from layerfs.errors import LayerfsError
from layerfs.images import read_image
from layerfs.images.reference import Candidate, normalize, select
from layerfs.oci.platform import matches, parse_platform
from layerfs.unpack.digests import chain_ids, parse_digest
from layerfs.unpack.names import NAME_MAX, entry_path
from layerfs.whiteouts import (
    MarkerName,
    backing_xattr_name,
    classify_marker,
    opaque_state,
    visible_xattr_name,
)
from tests.hostile import rawtar
from tests.images.tarbuild import f, layer_tar

from .regressions import save_regression
from .strategies import FUZZ, JSON, mutated

TAR = layer_tar([f("a", b"a")])


@pytest.fixture(scope="module")
def area():
    path = Path(tempfile.mkdtemp(prefix="layerfs-fuzz-img-",
                                 dir=os.environ.get("LAYERFS_TEST_TMP", "/var/tmp")))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def _json_bytes(document: object) -> bytes:
    return json.dumps(document, allow_nan=True).encode()


def read_or_fail_cleanly(layout: Path, kind: str, sample: bytes, form: str | None = None) -> None:
    try:
        read_image(str(layout), form)
    except LayerfsError as exc:
        assert "\n" not in str(exc), str(exc)
    except Exception:
        save_regression(kind, sample)
        raise
    finally:
        shutil.rmtree(layout, ignore_errors=True)


def _oci(area: Path, where: str, data: bytes) -> Path:
    layout = area / f"oci-{hashlib.sha256(data).hexdigest()[:12]}-{where}"
    shutil.rmtree(layout, ignore_errors=True)
    built = rawtar.oci_layout(layout, [TAR])
    if where == "index":
        (layout / "index.json").write_bytes(data)
    elif where == "manifest":
        digest = rawtar.put_blob(layout, data)
        index = json.loads((layout / "index.json").read_text())
        index["manifests"][0]["digest"] = digest
        (layout / "index.json").write_text(json.dumps(index))
    else:
        manifest = dict(built["manifest"], config=dict(built["manifest"]["config"],
                                                       digest=rawtar.put_blob(layout, data)))
        index = json.loads((layout / "index.json").read_text())
        index["manifests"][0]["digest"] = rawtar.put_blob(layout, json.dumps(manifest).encode())
        (layout / "index.json").write_text(json.dumps(index))
    return layout


def replay_oci(area: Path, kind: str, data: bytes) -> None:
    read_or_fail_cleanly(_oci(area, kind.split("-", 1)[1], data), kind, data)


def replay_docker_save(area: Path, kind: str, data: bytes) -> None:
    layout = area / f"docker-{hashlib.sha256(data).hexdigest()[:12]}"
    shutil.rmtree(layout, ignore_errors=True)
    layout.mkdir()
    (layout / "layer.tar").write_bytes(TAR)
    (layout / "config.json").write_text(json.dumps(
        {"rootfs": {"diff_ids": ["sha256:" + hashlib.sha256(TAR).hexdigest()]}}))
    (layout / "manifest.json").write_bytes(data)
    read_or_fail_cleanly(layout, kind, data, "docker-save")


def replay_docker_legacy(area: Path, kind: str, data: bytes) -> None:
    """``data``: {"repositories": ..., "json": ...} (the two files of the archive)."""
    parts = json.loads(data)
    layout = area / f"legacy-{hashlib.sha256(data).hexdigest()[:12]}"
    shutil.rmtree(layout, ignore_errors=True)
    top = "c" * 64
    (layout / top).mkdir(parents=True)
    (layout / top / "layer.tar").write_bytes(TAR)
    (layout / top / "json").write_bytes(_json_bytes(parts["json"]))
    repositories = parts["repositories"]
    (layout / "repositories").write_bytes(_json_bytes(
        repositories if not isinstance(repositories, dict) or repositories
        else {"app": {"latest": top}}))
    read_or_fail_cleanly(layout, kind, data, "docker-save-legacy")


def replay_skopeo_dir(area: Path, kind: str, data: bytes) -> None:
    layout = area / f"skopeo-{hashlib.sha256(data).hexdigest()[:12]}"
    shutil.rmtree(layout, ignore_errors=True)
    layout.mkdir()
    (layout / "version").write_text("Directory Transport Version: 1.1\n")
    (layout / "manifest.json").write_bytes(data)
    for blob in (json.dumps(_VALID["config"]).encode(), TAR):
        (layout / hashlib.sha256(blob).hexdigest()).write_bytes(blob)
    read_or_fail_cleanly(layout, kind, data, "skopeo-dir")


@FUZZ
@given(document=JSON, where=st.sampled_from(["index", "manifest", "config"]))
def test_fuzz_oci_documents(area: Path, document: object, where: str) -> None:
    replay_oci(area, f"oci-{where}", _json_bytes(document))


def _valid_documents() -> dict:
    scratch = Path(tempfile.mkdtemp(prefix="layerfs-fuzz-valid-"))
    try:
        return rawtar.oci_layout(scratch / "layout", [TAR])
    finally:
        shutil.rmtree(scratch)


_VALID = _valid_documents()
_VALID_INDEX = {"schemaVersion": 2, "manifests": [_VALID["descriptor"]]}


@FUZZ
@given(data=st.data(), where=st.sampled_from(["index", "manifest", "config"]))
def test_fuzz_oci_documents_near_valid(area: Path, data, where: str) -> None:
    valid = {"index": _VALID_INDEX, "manifest": _VALID["manifest"], "config": _VALID["config"]}
    document = data.draw(mutated(valid[where]))
    replay_oci(area, f"oci-{where}", _json_bytes(document))


@FUZZ
@given(document=mutated([{"Config": "config.json", "RepoTags": ["app:1"],
                          "Layers": ["layer.tar"]}]))
def test_fuzz_docker_save_manifest_near_valid(area: Path, document: object) -> None:
    replay_docker_save(area, "docker-save", _json_bytes(document))


@FUZZ
@given(document=JSON, wrap=st.booleans())
def test_fuzz_docker_save_manifest(area: Path, document: object, wrap: bool) -> None:
    replay_docker_save(area, "docker-save", _json_bytes([document] if wrap else document))


@FUZZ
@given(repositories=mutated({"app": {"latest": "c" * 64}}), layer_json=mutated({"id": "c" * 64}))
def test_fuzz_docker_legacy_near_valid(area: Path, repositories: object,
                                      layer_json: object) -> None:
    replay_docker_legacy(area, "docker-legacy",
                         _json_bytes({"repositories": repositories, "json": layer_json}))


@FUZZ
@given(repositories=JSON, layer_json=JSON)
def test_fuzz_docker_legacy(area: Path, repositories: object, layer_json: object) -> None:
    replay_docker_legacy(area, "docker-legacy",
                         _json_bytes({"repositories": repositories, "json": layer_json}))


@FUZZ
@given(document=mutated(_VALID["manifest"]))
def test_fuzz_skopeo_dir_near_valid(area: Path, document: object) -> None:
    replay_skopeo_dir(area, "skopeo-dir", _json_bytes(document))


@FUZZ
@given(document=JSON)
def test_fuzz_skopeo_dir(area: Path, document: object) -> None:
    replay_skopeo_dir(area, "skopeo-dir", _json_bytes(document))


# -- pure parsers --------------------------------------------------------------------------

TEXT = st.one_of(st.text(max_size=40), st.sampled_from([
    "nginx", "nginx:1.25", "docker.io/library/nginx:latest", "localhost:5000/a/b:c",
    "a@sha256:" + "f" * 64, "sha256:" + "f" * 64, "ffff", ":", "@", "/", "a:", ":b", "a//b",
    "UPPER/case:Tag", "a/b/c/d:e@sha256:00"]))


def replay_reference(area: Path, kind: str, data: bytes) -> None:
    sample = json.loads(data)
    check_references(sample["ref"], sample["names"])


@FUZZ
@given(ref=TEXT, names=st.lists(st.lists(TEXT, max_size=3), min_size=0, max_size=4))
def test_fuzz_references(ref: str, names: list[list[str]]) -> None:
    check_references(ref, names)


def check_references(ref: str, names: list[list[str]]) -> None:
    candidates = [Candidate(i, image_id="sha256:" + hashlib.sha256(str(i).encode()).hexdigest(),
                            names=n) for i, n in enumerate(names)]
    for call in (lambda: normalize(ref), lambda: select(candidates, ref, "store"),
                 lambda: select(candidates, None, "store")):
        try:
            call()
        except LayerfsError:
            pass
        except Exception:
            save_regression("reference", json.dumps({"ref": ref, "names": names}).encode())
            raise


def replay_platform(area: Path, kind: str, data: bytes) -> None:
    sample = json.loads(data)
    check_platforms_and_digests(sample["text"], sample["platform"])


@FUZZ
@given(text=TEXT, platform=JSON)
def test_fuzz_platforms_and_digests(text: str, platform: object) -> None:
    check_platforms_and_digests(text, platform)


def check_platforms_and_digests(text: str, platform: object) -> None:
    for call in (lambda: parse_platform(text), lambda: matches(platform, "linux/amd64"),
                 lambda: matches(platform, text), lambda: parse_digest(text),
                 lambda: chain_ids([text])):
        try:
            call()
        except LayerfsError:
            pass
        except Exception:
            save_regression("platform", json.dumps({"text": text,
                                                    "platform": platform}).encode())
            raise


@FUZZ
@given(name=st.binary(max_size=300))
def test_fuzz_entry_names(name: bytes) -> None:
    try:
        path = entry_path(name, "L")
    except LayerfsError:
        return
    parts = path.split(b"/") if path else []
    assert all(part and part not in (b".", b"..") for part in parts)
    assert b"\0" not in path and not path.startswith(b"/")
    assert all(len(part) <= NAME_MAX + 4 for part in parts)


@FUZZ
@given(name=st.one_of(st.binary(max_size=40), st.sampled_from(
    [b".wh.", b".wh..", b".wh...", b".wh..wh..opq", b".wh..wh.x", b".wh.a", b".wh..wh."])))
def test_fuzz_marker_classification(name: bytes) -> None:
    kind = classify_marker(name)
    if not name.startswith(b".wh."):
        assert kind is None
        return
    assert kind is not None
    if kind[0] == MarkerName.WHITEOUT:
        assert kind[1] and kind[1] not in (b".", b"..") and name == b".wh." + kind[1]


XATTR_NAMES = st.one_of(st.binary(max_size=40), st.sampled_from([
    b"trusted.overlay.opaque", b"user.overlay.opaque", b"trusted.overlay.overlay.x",
    b"trusted.overlay.overlay.", b"user.fuseoverlayfs.opaque", b"user.x", b"security.capability",
    b"user.containers.override_stat", b"trusted.overlay."]))


@FUZZ
@given(xattrs=st.dictionaries(XATTR_NAMES, st.sampled_from([b"y", b"x", b"y\0", b"", b"n",
                                                             b"\xff"]), max_size=4),
       name=XATTR_NAMES)
def test_fuzz_xattr_rules(xattrs: dict[bytes, bytes], name: bytes) -> None:
    opaque, xwhiteouts = opaque_state(xattrs)
    assert isinstance(opaque, bool) and isinstance(xwhiteouts, bool)
    shown = visible_xattr_name(name)
    if shown is not None:
        assert backing_xattr_name(shown) == name  # what is shown maps back to its storage


REPLAY = {"oci-index": replay_oci, "oci-manifest": replay_oci, "oci-config": replay_oci,
          "docker-save": replay_docker_save, "docker-legacy": replay_docker_legacy,
          "skopeo-dir": replay_skopeo_dir, "reference": replay_reference,
          "platform": replay_platform}


def _archive_of(layout: Path, compress: bool) -> bytes:
    import io
    import tarfile as tarlib
    out = io.BytesIO()
    with tarlib.open(fileobj=out, mode="w:gz" if compress else "w") as tar:
        tar.add(layout, arcname=".")
    return out.getvalue()


def replay_archive(area: Path, kind: str, data: bytes) -> None:
    """``data``: a damaged oci-archive; reading it and streaming its layers must fail cleanly."""
    from layerfs.unpack.survey import survey_blob
    path = area / f"archive-{hashlib.sha256(data).hexdigest()[:12]}.tar"
    path.write_bytes(data)
    try:
        plan = read_image(str(path))
        for layer in plan.layers:
            if layer.blob is not None:
                survey_blob(layer.blob)
    except LayerfsError as exc:
        assert "\n" not in str(exc), str(exc)
    except Exception:
        save_regression(kind, data)
        raise
    finally:
        path.unlink()


@pytest.fixture(scope="module")
def archives(area: Path) -> list[bytes]:
    layout = area / "archive-source"
    rawtar.oci_layout(layout, [TAR, layer_tar([f("b", b"b" * 3000)])])
    built = [_archive_of(layout, compress) for compress in (False, True)]
    shutil.rmtree(layout)
    return built


@FUZZ
@given(which=st.integers(0, 1), flips=st.lists(st.tuples(st.integers(0, 1 << 20),
                                                        st.integers(1, 255)), max_size=4),
       cut=st.one_of(st.none(), st.integers(0, 1 << 20)))
def test_fuzz_damaged_archives(area: Path, archives: list[bytes], which: int,
                               flips: list[tuple[int, int]], cut: int | None) -> None:
    data = bytearray(archives[which])
    for position, xor in flips:
        data[position % len(data)] ^= xor
    if cut is not None:
        del data[cut % len(data):]
    replay_archive(area, "archive", bytes(data))


REPLAY["archive"] = replay_archive
