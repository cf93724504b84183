"""The HTTP behaviour a pull relies on, against a real registry: Retry-After honoured,
credentials not sent along a blob redirect to another host (blob storage, a CDN), and
proxies taken from the environment."""

from __future__ import annotations

from .conftest import run
from .servers import BlobStore, Fault, FaultProxy
from .test_auth import basic_registry, home, pull  # noqa: F401 - the fixtures

NO_PROXIES = {name: "" for name in ("http_proxy", "https_proxy", "all_proxy", "no_proxy",
                                    "HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "NO_PROXY")}


def test_retry_after_is_honoured(registry, workdir):
    """The backoff without it is 0.5 s then 1 s (+-25%): two gaps of 2 s are Retry-After's."""
    faults = [Fault("/manifests/v1", 429, retry_after="2"),
              Fault("/manifests/v1", 503, retry_after="2")]
    with FaultProxy(registry.port, faults=faults) as proxy:
        result = run("pull", "--insecure", "--cache-dir", str(workdir / "cache"),
                     f"{proxy.host}/test/multi:v1")
        assert result.returncode == 0, result.stderr
        asked = [r for r in proxy.log if "/manifests/v1" in r.path and r.method == "GET"][:3]
    assert [r.status for r in asked] == [429, 503, 200]
    assert asked[1].at - asked[0].at >= 1.9
    assert asked[2].at - asked[1].at >= 1.9


def test_blob_redirect_to_another_host_drops_the_credentials(basic_registry, workdir,  # noqa: F811
                                                             home):  # noqa: F811
    with BlobStore(basic_registry) as store, \
            FaultProxy(basic_registry.port, redirect_blobs=store.url) as proxy:
        result = pull(f"{proxy.host}/test/multi:v1", workdir / "cache", "--creds",
                      "alice:secret", env=home)
        assert result.returncode == 0, result.stderr
        assert "3 fetched" in result.stdout
        redirected = [r for r in proxy.log if "/blobs/" in r.path]
    assert len(redirected) == 4 and all(r.status == 307 for r in redirected)  # config, 3 layers
    assert all(r.authorization and r.authorization.startswith("Basic ") for r in redirected)
    assert sorted(r.path for r in store.log) == sorted(r.path.rpartition("/v2/test/multi")[2]
                                                       for r in redirected)
    assert all(r.authorization is None for r in store.log)


def test_proxy_from_the_environment(registry, workdir):
    """HTTP_PROXY is used for a plain-HTTP registry (the proxy forwards to it)."""
    with FaultProxy(registry.port) as proxy:
        env = dict(NO_PROXIES, HTTP_PROXY=f"http://{proxy.host}",
                   http_proxy=f"http://{proxy.host}")
        result = run("pull", "--insecure", "--cache-dir", str(workdir / "cache"),
                     f"{registry.host}/test/multi:v1", env=env)
        assert result.returncode == 0, result.stderr
        through = [r.path for r in proxy.log]
    assert f"http://{registry.host}/v2/test/multi/manifests/v1" in through
    assert len([path for path in through if "/blobs/" in path]) == 4
