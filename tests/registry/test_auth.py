"""Authentication against real registries: htpasswd (Basic) and the bearer-token flow
(distribution's ``auth.token`` with a token server on loopback), with credentials from
--creds, docker's config.json, containers' auth.json, $REGISTRY_AUTH_FILE, a credential
helper, and identity tokens. Errors name the reference and say what to do."""

from __future__ import annotations

import base64
import json
import os
import shutil
from pathlib import Path
from typing import Iterator

import pytest

from ..images.mounting import mounted
from .conftest import SCRATCH, run
from .images import push
from .servers import RegistryServer, TokenServer, env_without_credentials

USERS = {"alice": "secret"}


def _b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def _scratch(prefix: str) -> Path:
    import tempfile
    return Path(tempfile.mkdtemp(prefix=prefix, dir=SCRATCH))


@pytest.fixture(scope="module")
def basic_registry(layouts: Path) -> Iterator[RegistryServer]:
    work = _scratch("layerfs-registry-basic-")
    try:
        with RegistryServer(work, htpasswd=USERS) as server:
            push(layouts, "multi", f"{server.host}/test/multi:v1", "--dest-creds",
                 "alice:secret")
            yield server
    finally:
        shutil.rmtree(work, ignore_errors=True)


@pytest.fixture(scope="module")
def token_registry(layouts: Path) -> Iterator[tuple[RegistryServer, TokenServer]]:
    work = _scratch("layerfs-registry-token-")
    try:
        with TokenServer(work, USERS, public={"test/public"}) as tokens, \
                RegistryServer(work, token=tokens) as server:
            for repo in ("test/public", "test/private"):
                push(layouts, "multi", f"{server.host}/{repo}:v1", "--dest-creds",
                     "alice:secret")
            yield server, tokens
    finally:
        shutil.rmtree(work, ignore_errors=True)


@pytest.fixture
def home(workdir: Path) -> dict[str, str]:
    """An environment whose HOME and XDG_RUNTIME_DIR are empty temporary dirs."""
    (workdir / "home" / "run").mkdir(parents=True)
    return env_without_credentials(workdir / "home")


def pull(ref: str, cache: Path, *args: str, env: dict[str, str] | None = None):  # type: ignore[no-untyped-def]
    return run("pull", "--insecure", "--cache-dir", str(cache), *args, ref, env=env)


# -- Basic (htpasswd) ----------------------------------------------------------------------

def test_basic_without_credentials_says_how_to_log_in(basic_registry, workdir, home):
    ref = f"{basic_registry.host}/test/multi:v1"
    result = pull(ref, workdir / "cache", env=home)
    assert result.returncode == 1
    assert f"{ref}: manifest v1: authentication required (401)" in result.stderr
    assert f"no credentials for {basic_registry.host}" in result.stderr
    assert "--creds" in result.stderr and ".docker/config.json" in result.stderr


def test_basic_with_creds(basic_registry, workdir, home):
    result = pull(f"{basic_registry.host}/test/multi:v1", workdir / "cache", "--creds",
                  "alice:secret", env=home)
    assert result.returncode == 0, result.stderr
    assert "3 fetched" in result.stdout


def test_basic_with_wrong_password(basic_registry, workdir, home):
    ref = f"{basic_registry.host}/test/multi:v1"
    result = pull(ref, workdir / "cache", "--creds", "alice:wrong", env=home)
    assert result.returncode == 1
    assert f"{ref}: manifest v1: authentication failed (401)" in result.stderr
    assert "--creds" in result.stderr


@pytest.mark.parametrize("where", ["docker", "docker-config-env", "xdg-runtime",
                                   "registry-auth-file", "config-home"])
def test_credentials_from_auth_files(basic_registry, workdir, home, where):
    host = basic_registry.host
    entry = {"auth": _b64("alice:secret")}
    root = Path(home["HOME"])
    if where == "docker":
        path, content = root / ".docker" / "config.json", {"auths": {host: entry}}
    elif where == "docker-config-env":
        path = workdir / "dockercfg" / "config.json"
        content = {"auths": {f"https://{host}": entry}}
        home["DOCKER_CONFIG"] = str(path.parent)
    elif where == "xdg-runtime":
        path = Path(home["XDG_RUNTIME_DIR"]) / "containers" / "auth.json"
        content = {"auths": {host: {"username": "alice", "password": "secret"}}}
    elif where == "registry-auth-file":
        path = workdir / "auth.json"
        content = {"auths": {f"http://{host}/v2/": entry}}
        home["REGISTRY_AUTH_FILE"] = str(path)
    else:
        path = root / ".config" / "containers" / "auth.json"
        content = {"auths": {host: entry}}
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(content))
    result = pull(f"{host}/test/multi:v1", workdir / "cache", env=home)
    assert result.returncode == 0, result.stderr


def test_most_specific_auth_entry_wins(basic_registry, workdir, home):
    host = basic_registry.host
    path = Path(home["XDG_RUNTIME_DIR"]) / "containers" / "auth.json"
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps({"auths": {host: {"auth": _b64("alice:wrong")},
                                          f"{host}/test": {"auth": _b64("alice:secret")}}}))
    assert pull(f"{host}/test/multi:v1", workdir / "cache", env=home).returncode == 0


def test_authfile_option_is_the_only_file_read(basic_registry, workdir, home):
    host = basic_registry.host
    docker = Path(home["HOME"]) / ".docker" / "config.json"
    docker.parent.mkdir()
    docker.write_text(json.dumps({"auths": {host: {"auth": _b64("alice:secret")}}}))
    other = workdir / "other.json"
    other.write_text(json.dumps({"auths": {}}))
    result = pull(f"{host}/test/multi:v1", workdir / "cache", "--authfile", str(other),
                  env=home)
    assert result.returncode == 1
    assert "authentication required" in result.stderr


def test_credential_helper(basic_registry, workdir, home):
    host = basic_registry.host
    bin_dir = workdir / "bin"
    bin_dir.mkdir()
    helper = bin_dir / "docker-credential-layerfstest"
    helper.write_text("#!/bin/sh\nread server\n"
                      f"[ \"$server\" = \"{host}\" ] || {{ echo 'credentials not found'; exit 1; }}\n"
                      "echo '{\"ServerURL\":\"'$server'\",\"Username\":\"alice\","
                      "\"Secret\":\"secret\"}'\n")
    helper.chmod(0o755)
    config = Path(home["HOME"]) / ".docker" / "config.json"
    config.parent.mkdir()
    config.write_text(json.dumps({"credHelpers": {host: "layerfstest"}}))
    home["PATH"] = f"{bin_dir}{os.pathsep}{os.environ['PATH']}"
    result = pull(f"{host}/test/multi:v1", workdir / "cache", env=home)
    assert result.returncode == 0, result.stderr
    config.write_text(json.dumps({"credsStore": "layerfstest"}))
    result = pull(f"{host}/test/multi:v1", workdir / "cache2", env=home)
    assert result.returncode == 0, result.stderr


def test_mount_with_credentials_from_docker_config(basic_registry, workdir, home,
                                                   monkeypatch):
    host = basic_registry.host
    config = Path(home["HOME"]) / ".docker" / "config.json"
    config.parent.mkdir()
    config.write_text(json.dumps({"auths": {host: {"auth": _b64("alice:secret")}}}))
    for key in ("HOME", "XDG_RUNTIME_DIR"):  # the mount runs with the test's environment
        monkeypatch.setenv(key, home[key])
    monkeypatch.delenv("REGISTRY_AUTH_FILE", raising=False)
    monkeypatch.delenv("DOCKER_CONFIG", raising=False)
    with mounted(f"docker://{host}/test/multi:v1", workdir / "mnt", "--insecure",
                 "--cache-dir", str(workdir / "cache")) as root:
        assert (root / "etc" / "os-release").read_text().endswith("VERSION=2\n")


# -- Bearer tokens --------------------------------------------------------------------------

def test_token_flow_anonymous_for_a_public_repository(token_registry, workdir, home):
    server, tokens = token_registry
    tokens.requests.clear()
    result = pull(f"{server.host}/test/public:v1", workdir / "cache", env=home)
    assert result.returncode == 0, result.stderr
    assert tokens.requests and all(r["user"] is None for r in tokens.requests)
    assert tokens.requests[0]["scope"] == ["repository:test/public:pull"]
    assert len(tokens.requests) == 1  # one token serves every request of the pull


def test_token_flow_anonymous_denied_for_a_private_repository(token_registry, workdir, home):
    server, _ = token_registry
    ref = f"{server.host}/test/private:v1"
    result = pull(ref, workdir / "cache", env=home)
    assert result.returncode == 1
    assert f"{ref}: manifest v1: access denied (401 insufficient_scope)" in result.stderr
    assert "anonymous access is not allowed" in result.stderr


def test_token_flow_with_credentials(token_registry, workdir, home):
    server, tokens = token_registry
    tokens.requests.clear()
    result = pull(f"{server.host}/test/private:v1", workdir / "cache", "--creds",
                  "alice:secret", env=home)
    assert result.returncode == 0, result.stderr
    assert tokens.requests[0]["user"] == "alice"


def test_token_flow_with_wrong_credentials(token_registry, workdir, home):
    server, tokens = token_registry
    ref = f"{server.host}/test/private:v1"
    result = pull(ref, workdir / "cache", "--creds", "alice:nope", env=home)
    assert result.returncode == 1
    assert f"{ref}: manifest v1: authentication failed (401 from the token server " \
           f"{tokens.realm})" in result.stderr


def test_token_flow_with_an_identity_token(token_registry, workdir, home):
    server, tokens = token_registry
    tokens.refresh_tokens["refresh-alice"] = "alice"
    config = Path(home["HOME"]) / ".docker" / "config.json"
    config.parent.mkdir()
    config.write_text(json.dumps({"auths": {server.host: {"identitytoken": "refresh-alice"}}}))
    tokens.requests.clear()
    result = pull(f"{server.host}/test/private:v1", workdir / "cache", env=home)
    assert result.returncode == 0, result.stderr
    assert tokens.requests[0].get("grant") == "refresh"
