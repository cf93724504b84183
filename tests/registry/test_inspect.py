"""``layerfs inspect docker://...``: the layers from the registry's manifest and config,
without fetching a layer; what the layer cache already holds fills in entries and sizes."""

from __future__ import annotations

import json
import subprocess
import sys

from .conftest import layerfs_env, run
from .servers import FaultProxy
from .test_lazy import run_skopeo_inspect


def test_inspect_reads_manifest_and_config_only(registry, workdir):
    manifest_text = run_skopeo_inspect(registry.host, "test/multi:v1")
    manifest = json.loads(manifest_text)
    config = json.loads(run("inspect", "--json", "--insecure", "--cache-dir",
                            str(workdir / "unused"), f"docker://{registry.host}/test/multi:v1"
                            ).stdout)
    layers = config["layers"]
    skopeos = json.loads(subprocess.run(
        ["skopeo", "inspect", "--tls-verify=false", f"docker://{registry.host}/test/multi:v1"],
        check=True, capture_output=True).stdout)
    assert config["digest"] == skopeos["Digest"]
    assert (config["created"], config["os"], config["architecture"], config["env"]) == \
        (skopeos["Created"], skopeos["Os"], skopeos["Architecture"], skopeos.get("Env") or [])
    raw = subprocess.run([sys.executable, "-m", "layerfs", "inspect", "--raw", "--insecure",
                          f"docker://{registry.host}/test/multi:v1"], capture_output=True,
                         env=layerfs_env())
    assert raw.stdout.decode() == manifest_text
    assert [layer["blob_digest"] for layer in layers] == \
        [layer["digest"] for layer in manifest["layers"]]
    assert [layer["compressed_size"] for layer in layers] == \
        [layer["size"] for layer in manifest["layers"]]
    assert all(layer["diff_id"].startswith("sha256:") and layer["chain_id"] for layer in layers)
    assert layers[0]["chain_id"] == layers[0]["diff_id"]
    assert [layer["entries"] for layer in layers] == [None, None, None]  # not read
    assert config["form"] == "registry" and config["source"].startswith("docker://")

    with FaultProxy(registry.port) as proxy:
        table = run("inspect", "--insecure", "--cache-dir", str(workdir / "unused"),
                    f"docker://{proxy.host}/test/multi:v1")
        assert table.returncode == 0, table.stderr
        blobs = [r for r in proxy.log if "/blobs/" in r.path]
        assert [r.path.rsplit("/", 1)[1] for r in blobs] == [manifest["config"]["digest"]]
    lines = table.stdout.splitlines()
    assert "(registry, 3 layers, bottom first)" in lines[0] and "@sha256:" in lines[0]
    assert lines[1].split() == ["Digest:", config["digest"]]
    header = lines.index("") + 1
    assert len(lines) == header + 4 and lines[header].split()[:2] == ["#", "DIFFID"]
    assert not (workdir / "unused" / "layers").exists()


def test_inspect_after_a_pull_knows_entries(registry, workdir):
    cache = str(workdir / "cache")
    ref = f"{registry.host}/test/multi:v1"
    assert run("pull", "--insecure", "--quiet", "--cache-dir", cache, ref).returncode == 0
    layers = json.loads(run("inspect", "--json", "--insecure", "--cache-dir", cache,
                            f"docker://{ref}").stdout)["layers"]
    assert all(layer["entries"] and layer["size"] for layer in layers)


def test_inspect_of_a_missing_tag_is_one_clear_line(registry, workdir):
    result = run("inspect", "--insecure", f"docker://{registry.host}/test/multi:nope")
    assert result.returncode == 1
    assert len(result.stderr.strip().splitlines()) == 1 and "multi:nope" in result.stderr


def test_every_image_command_takes_the_registry_options(registry, workdir):
    """which/diff/usage said "add --insecure" for a plain-HTTP registry, then refused it;
    skopeo's --tls-verify=false says the same."""
    ref = f"docker://{registry.host}/test/multi:v1"
    cache = ["--cache-dir", str(workdir / "cache"), "--quiet"]
    which = run("which", *cache, "--insecure", ref, "/app/config.ini")
    assert which.returncode == 0, which.stderr
    assert "config.ini" in which.stdout
    for command in (["diff", *cache, "--tls-verify=false", ref, "1"],
                    ["usage", *cache, "--insecure", "--retries", "1", ref],
                    ["inspect", "--tls-verify=false", "--cache-dir", str(workdir / "cache"),
                     ref]):
        result = run(*command)
        assert result.returncode == 0, f"{command}: {result.stderr}"
    refused = run("which", *cache, ref, "/app/config.ini")  # plain HTTP, not --insecure
    assert refused.returncode == 1 and "--insecure" in refused.stderr


def test_the_explore_commands_do_not_import_the_main_command_line():
    """Their options come from layerfs.cliopts, not from layerfs.cli (an import cycle)."""
    import subprocess
    import sys

    code = ("import argparse, sys, layerfs.explore.cli, layerfs.registry.cli; "
            "commands = argparse.ArgumentParser().add_subparsers(); "
            "layerfs.explore.cli.register(commands); layerfs.registry.cli.register(commands); "
            "print('layerfs.cli' in sys.modules)")
    shown = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                           check=True).stdout
    assert shown.strip() == "False"
