"""Hypothesis strategies for hostile input: tar streams, JSON documents, names.

Tar streams are built from crafted headers (tests/hostile/rawtar.py) with
fields drawn from both sane and hostile values, then optionally mutated
byte-wise; JSON documents use the vocabulary of OCI and Docker files so the
readers get past their first checks.
"""

from __future__ import annotations

import os

from hypothesis import settings
from hypothesis import strategies as st

from tests.hostile import rawtar

EXAMPLES = int(os.environ.get("LAYERFS_FUZZ_EXAMPLES", "250"))
FUZZ = settings(max_examples=EXAMPLES, deadline=None, database=None,
                derandomize=os.environ.get("LAYERFS_FUZZ_RANDOM") != "1",
                suppress_health_check=list(settings.default.suppress_health_check) + [
                    __import__("hypothesis").HealthCheck.too_slow,
                    __import__("hypothesis").HealthCheck.data_too_large,
                    __import__("hypothesis").HealthCheck.filter_too_much])

NAME_PARTS = st.sampled_from([b"a", b"b", b"etc", b".", b"..", b"", b".wh.a", b".wh..wh..opq",
                              b".wh..wh.plnk", b"\xff\xfe", b"x" * 256, b"a\nb", b"\0", b"/"])
NAMES = st.one_of(
    st.lists(NAME_PARTS, min_size=0, max_size=5).map(b"/".join),
    st.binary(min_size=0, max_size=120),
)
TYPES = st.sampled_from([b"0", b"\0", b"1", b"2", b"3", b"4", b"5", b"6", b"7", b"S", b"x",
                         b"g", b"L", b"K", b"V", b"M", b"Z", b"A"])
NUMBERS = st.one_of(st.integers(0, 4096), st.integers(0, 2 ** 40), st.just(8 ** 11 - 1))
PAX_KEYS = st.sampled_from([b"path", b"linkpath", b"size", b"uid", b"gid", b"mtime",
                            b"uname", b"SCHILY.xattr.user.x", b"SCHILY.xattr.security.capability",
                            b"SCHILY.xattr.", b"SCHILY.xattr.trusted.overlay.opaque",
                            b"GNU.sparse.map", b"GNU.sparse.size", b"GNU.sparse.offset",
                            b"GNU.sparse.numbytes", b"GNU.sparse.realsize", b"GNU.sparse.name",
                            b"GNU.sparse.major", b"GNU.sparse.minor", b"hdrcharset",
                            b"comment", b"atime"])
PAX_VALUES = st.one_of(NAMES, st.sampled_from([b"0", b"-1", b"1e999", b"nan", b"12.5", b"1,2,3",
                                               b"0,10,20,5", b"BINARY", b"99999999999999999999"]))


@st.composite
def tar_members(draw) -> bytes:
    kind = draw(TYPES)
    out = b""
    if draw(st.booleans()):
        out += rawtar.pax(draw(st.dictionaries(PAX_KEYS, PAX_VALUES, max_size=4)))
    data = draw(st.binary(max_size=600)) if kind in (b"0", b"\0", b"7", b"S", b"x", b"g",
                                                     b"L", b"K") else b""
    size = len(data) if draw(st.booleans()) else draw(NUMBERS)
    header = rawtar.header(draw(NAMES)[:100] or b"n", size=size, kind=kind,
                           linkname=draw(NAMES)[:100], mode=draw(st.integers(0, 0o7777)),
                           uid=draw(st.integers(0, 70000)), gid=draw(st.integers(0, 70000)),
                           mtime=draw(st.integers(0, 2 ** 33)),
                           devmajor=draw(st.integers(0, 300)), devminor=draw(st.integers(0, 300)),
                           gnu=draw(st.booleans()))
    return out + header + rawtar.padded(data)


@st.composite
def tar_streams(draw) -> bytes:
    stream = b"".join(draw(st.lists(tar_members(), min_size=0, max_size=6)))
    if draw(st.booleans()):
        stream += rawtar.end()
    for _ in range(draw(st.integers(0, 3))):  # byte-level damage
        if not stream:
            break
        position = draw(st.integers(0, len(stream) - 1))
        stream = stream[:position] + bytes([draw(st.integers(0, 255))]) + stream[position + 1:]
    if stream and draw(st.booleans()):
        stream = stream[:draw(st.integers(0, len(stream)))]
    return stream


VOCABULARY = ["schemaVersion", "mediaType", "manifests", "digest", "size", "platform",
              "annotations", "config", "layers", "rootfs", "diff_ids", "history", "created_by",
              "empty_layer", "architecture", "os", "variant", "Config", "RepoTags", "Layers",
              "parent", "org.opencontainers.image.ref.name", "type", "urls"]
DIGESTS = st.sampled_from(["sha256:" + "a" * 64, "sha256:../../etc/passwd", "md5:00", "",
                           "sha512:" + "b" * 128, "sha256:" + "A" * 64, "/etc/passwd"])
MEDIA = st.sampled_from(["application/vnd.oci.image.index.v1+json",
                         "application/vnd.oci.image.manifest.v1+json",
                         "application/vnd.docker.distribution.manifest.v2+json",
                         "application/vnd.oci.image.config.v1+json", "text/plain"])
SCALARS = st.one_of(st.none(), st.booleans(), st.integers(-2, 2 ** 70), st.floats(),
                    st.text(max_size=20), DIGESTS, MEDIA)
JSON = st.recursive(SCALARS, lambda children: st.one_of(
    st.lists(children, max_size=4),
    st.dictionaries(st.one_of(st.sampled_from(VOCABULARY), st.text(max_size=8)), children,
                    max_size=5)), max_leaves=25)


_DELETE = object()


def _paths(document: object, prefix: tuple = ()) -> list[tuple]:
    found = [prefix]
    if isinstance(document, dict):
        for key, value in document.items():
            found += _paths(value, prefix + (key,))
    elif isinstance(document, list):
        for index, value in enumerate(document):
            found += _paths(value, prefix + (index,))
    return found


def _apply(document: object, path: tuple, value: object) -> object:
    if not path:
        return document if value is _DELETE else value
    head, rest = path[0], path[1:]
    if isinstance(document, dict):
        copy = dict(document)
        if not rest and value is _DELETE:
            copy.pop(head, None)
        else:
            copy[head] = _apply(copy[head], rest, value)
        return copy
    copy_list = list(document)  # type: ignore[arg-type]
    if not rest and value is _DELETE:
        del copy_list[head]
    else:
        copy_list[head] = _apply(copy_list[head], rest, value)
    return copy_list


def mutated(document: object, max_changes: int = 3):
    """``document`` with up to ``max_changes`` values replaced by random JSON or removed."""
    @st.composite
    def build(draw):
        current = document
        for _ in range(draw(st.integers(1, max_changes))):
            path = draw(st.sampled_from(_paths(current)))
            value = draw(st.one_of(JSON, st.just(_DELETE)))
            current = _apply(current, path, value)
        return current
    return build()
