"""Pure parts of the registry client: references, challenges, credential lookup, backoff."""

from __future__ import annotations

import base64
import json

import pytest

from layerfs.errors import UsageError
from layerfs.registry.auth import (
    Credentials,
    auth_files,
    credentials_in,
    find_credentials,
    normal_key,
    parse_challenge,
    parse_creds,
)
from layerfs.registry.http import RetryPolicy
from layerfs.registry.reference import Reference, is_remote, parse_reference


@pytest.mark.parametrize("spec, expected", [
    ("busybox", Reference("docker.io", "library/busybox", "latest")),
    ("docker://busybox:1.36", Reference("docker.io", "library/busybox", "1.36")),
    ("oci://user/app", Reference("docker.io", "user/app", "latest")),
    ("index.docker.io/library/nginx", Reference("docker.io", "library/nginx", "latest")),
    ("ghcr.io/org/team/tool:v1.2.3", Reference("ghcr.io", "org/team/tool", "v1.2.3")),
    ("localhost/app", Reference("localhost", "app", "latest")),
    ("127.0.0.1:5000/test/multi:v1", Reference("127.0.0.1:5000", "test/multi", "v1")),
    ("127.0.0.1:5000/test/multi@sha256:" + "a" * 64,
     Reference("127.0.0.1:5000", "test/multi", None, "sha256:" + "a" * 64)),
    ("reg.example:443/a/b:t@sha256:" + "b" * 64,
     Reference("reg.example:443", "a/b", "t", "sha256:" + "b" * 64)),
    ("[::1]:5000/x", Reference("[::1]:5000", "x", "latest")),
])
def test_parse_reference(spec, expected):
    assert parse_reference(spec) == expected


@pytest.mark.parametrize("spec", ["", "docker://", "Upper/case", "a//b", "x:bad tag",
                                  "repo@sha256:short", "reg.example/-lead"])
def test_bad_references(spec):
    with pytest.raises(UsageError):
        parse_reference(spec)


def test_reference_text_and_api_host():
    ref = parse_reference("busybox")
    assert str(ref) == "docker.io/library/busybox:latest"
    assert ref.api_host == "registry-1.docker.io"
    assert ref.manifest_ref == "latest"
    assert parse_reference("127.0.0.1:5000/a:b").api_host == "127.0.0.1:5000"
    assert is_remote("docker://x") and is_remote("oci://x") and not is_remote("/var/x")


def test_challenges():
    bearer = parse_challenge('Bearer realm="https://auth.example/token",'
                             'service="registry.example",scope="repository:a/b:pull"')
    assert bearer is not None and bearer.scheme == "bearer"
    assert bearer.params == {"realm": "https://auth.example/token",
                             "service": "registry.example", "scope": "repository:a/b:pull"}
    basic = parse_challenge('Basic realm="basic-realm"')
    assert basic is not None and basic.scheme == "basic"
    insufficient = parse_challenge('Bearer realm="r",service="s",error="insufficient_scope"')
    assert insufficient is not None and insufficient.params["error"] == "insufficient_scope"
    assert parse_challenge('Negotiate abc, Basic realm="x"').scheme == "basic"
    assert parse_challenge("") is None
    escaped = parse_challenge(r'Bearer realm="a\"b"')
    assert escaped is not None and escaped.params["realm"] == 'a"b'


@pytest.mark.parametrize("key, normal", [
    ("https://index.docker.io/v1/", "docker.io"),
    ("docker.io", "docker.io"),
    ("http://127.0.0.1:5000", "127.0.0.1:5000"),
    ("https://127.0.0.1:5000/v2/", "127.0.0.1:5000"),
    ("quay.io/org", "quay.io/org"),
    ("quay.io/org/repo/", "quay.io/org/repo"),
])
def test_auth_keys(key, normal):
    assert normal_key(key) == normal


def _auth(user: str, password: str) -> dict:
    return {"auth": base64.b64encode(f"{user}:{password}".encode()).decode()}


def test_credentials_in_a_config():
    ref = parse_reference("quay.io/org/repo:v1")
    config = {"auths": {"quay.io": _auth("a", "1"), "quay.io/org": _auth("b", "2"),
                        "quay.io/other": _auth("c", "3")}}
    found = credentials_in(config, ref, "f")
    assert found == Credentials("b", "2", source="f")
    hub = credentials_in({"auths": {"https://index.docker.io/v1/": _auth("d", "4")}},
                         parse_reference("busybox"), "f")
    assert hub is not None and hub.username == "d"
    assert credentials_in({"auths": {"other.io": _auth("e", "5")}}, ref, "f") is None
    token = credentials_in({"auths": {"quay.io": {"identitytoken": "tok"}}}, ref, "f")
    assert token is not None and token.identity_token == "tok"


def test_auth_file_order(tmp_path):
    env = {"HOME": str(tmp_path), "XDG_RUNTIME_DIR": str(tmp_path / "run"),
           "REGISTRY_AUTH_FILE": str(tmp_path / "explicit.json")}
    assert auth_files(env) == [tmp_path / "explicit.json",
                               tmp_path / "run" / "containers" / "auth.json",
                               tmp_path / ".config" / "containers" / "auth.json",
                               tmp_path / ".docker" / "config.json"]
    ref = parse_reference("reg.example/app")
    (tmp_path / ".docker").mkdir()
    (tmp_path / ".docker" / "config.json").write_text(
        json.dumps({"auths": {"reg.example": _auth("docker", "x")}}))
    assert find_credentials(ref, env=env).username == "docker"
    (tmp_path / "run" / "containers").mkdir(parents=True)
    (tmp_path / "run" / "containers" / "auth.json").write_text(
        json.dumps({"auths": {"reg.example": _auth("podman", "y")}}))
    assert find_credentials(ref, env=env).username == "podman"
    (tmp_path / "run" / "containers" / "auth.json").write_text(json.dumps({"auths": {}}))
    assert find_credentials(ref, env=env).username == "docker"  # the next file that has one


def test_parse_creds():
    assert parse_creds("u:p:q") == Credentials("u", "p:q", source="--creds")
    with pytest.raises(UsageError):
        parse_creds(":nouser")


def test_backoff_grows_and_is_capped():
    policy = RetryPolicy(retries=5, backoff=1.0, max_backoff=4.0)
    delays = [policy.delay(n) for n in range(1, 6)]
    assert 0.75 <= delays[0] <= 1.25
    assert all(d <= 4.0 * 1.25 for d in delays)
    assert delays[3] >= 4.0 * 0.75
    assert policy.delay(1, "3") == 3.0


class _BytesBlob:
    """A blob in memory answering range requests as a registry does (for the reader alone)."""

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.ranges: list[tuple[int, int]] = []

    def open_blob(self, digest, start=0, end=None, *, what):  # type: ignore[no-untyped-def]
        blob = self

        class Response:
            status = 206

            def read_all(self, limit: int) -> bytes:
                return blob.data[start:end + 1][:limit]

            def __enter__(self):  # type: ignore[no-untyped-def]
                return self

            def __exit__(self, *exc: object) -> None:
                pass

        self.ranges.append((start, end))
        return Response()


def test_tar_toc_read_by_ranges_matches_tarfile():
    import io
    import random
    import tarfile

    from layerfs.oci.model import Descriptor
    from layerfs.registry.lazy.toc import _tar_toc
    from layerfs.registry.resolve import RemoteLayer

    rng = random.Random(7)
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for number in range(600):
            name = f"dir{number % 7}/" + "long-name-" * rng.randrange(0, 30) + f"{number}"
            info = tarfile.TarInfo(name)
            data = rng.randbytes(rng.choice([0, 10, 700, 5000, 70000, 300000]))
            info.size = len(data)
            info.pax_headers = {"SCHILY.xattr.user.n": str(number) * rng.randrange(1, 200)}
            tar.addfile(info, io.BytesIO(data))
    data = buffer.getvalue()
    blob = _BytesBlob(data)
    layer = RemoteLayer(0, Descriptor.decode({"digest": "sha256:" + "0" * 64, "size": len(data),
                                              "mediaType": "application/vnd.oci.image.layer.v1.tar"},
                                             "test"), "", "")
    toc = _tar_toc(blob, layer, "test")  # type: ignore[arg-type]
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:") as tar:
        members = tar.getmembers()
    assert [m.name for m, _ in toc.entries] == [m.name for m in members]
    for (member, file_data), reference in zip(toc.entries, members, strict=True):
        assert member.pax_headers == reference.pax_headers
        if reference.size:
            part = file_data.parts[0]
            assert (part.start, part.size) == (reference.offset_data, reference.size)
    assert len(blob.ranges) < 40  # read-ahead: far fewer requests than entries
