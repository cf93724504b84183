"""``layerfs diff``: per-layer changes, two layers, two images."""

from __future__ import annotations

from pathlib import Path

from tests.explore.conftest import layerfs_json
from tests.support.mounting import run_layerfs


def _by_path(diff: dict) -> dict:
    return {c["path"]: c for c in diff["changes"]}


def test_every_layer_relative_to_below(stack_image: Path) -> None:
    doc = layerfs_json("diff", str(stack_image))
    first, second, third = doc["diffs"]
    assert first["from"] is None and first["to"]["layer"]["index"] == 1
    assert all(c["kind"] == "added" for c in first["changes"])
    assert _by_path(first)["/tmp/big"]["size"] == 5000

    changes = _by_path(second)
    assert changes["/etc/hosts"]["kind"] == "modified"
    assert changes["/etc/hosts"]["changed"][:2] == ["size", "content"]
    assert changes["/gone"] == {"kind": "removed", "path": "/gone", "type": "dir", "size": 150,
                                "entries": 3, "via": "whiteout", "changed": [], "before": {},
                                "after": {}}
    assert changes["/opq"]["kind"] == "opaque"
    assert changes["/opq/old"]["kind"] == "removed" and changes["/opq/old"]["via"] == "opaque"
    assert "/opq/kept" not in changes  # the same content re-added: no change
    assert changes["/opq/new"]["kind"] == "added"
    assert changes["/swap"]["kind"] == "modified"
    assert changes["/swap"]["before"]["type"] == "dir" and changes["/swap"]["after"]["type"] == "file"
    assert "/swap/c" not in changes
    assert second["summary"]["removed_bytes"] == 150 + 3 + 1

    changes = _by_path(third)
    assert set(changes) == {"/etc/hosts", "/tmp/big", "/bin/sh-link", "/etc/new"}
    assert changes["/etc/hosts"]["before"]["mode"] == "0644"
    assert changes["/etc/hosts"]["after"]["mode"] == "0600"
    assert changes["/bin/sh-link"]["changed"] == ["target"]
    assert changes["/bin/sh-link"]["after"]["target"] == "/bin/sh"
    assert changes["/tmp/big"]["via"] == "whiteout" and changes["/tmp/big"]["size"] == 5000


def test_content_change_with_equal_size_is_hashed(tmp_path: Path) -> None:
    from tests.explore.images import File, layer_dirs_image

    image = layer_dirs_image(tmp_path / "img", layers=[{b"f": File(b"aaaa")},
                                                       {b"f": File(b"bbbb")}])
    change = layerfs_json("diff", str(image), "2")["diffs"][0]["changes"][0]
    assert change["changed"] == ["content"]
    assert change["before"]["content"] != change["after"]["content"]
    assert len(change["after"]["content"]) == 32  # xxh3-128


def test_umoci_layers(umoci_layout: Path, cache_dir: Path) -> None:
    image = f"{umoci_layout}:v3"
    doc = layerfs_json("diff", image, "2", "--cache-dir", str(cache_dir))
    layer2 = doc["diffs"][0]
    assert layer2["to"]["layer"]["created_by"] == "edit things"
    changes = _by_path(layer2)
    assert changes["/etc/config"]["kind"] == "removed"
    assert changes["/etc/config"]["via"] == "whiteout"
    assert changes["/etc/keep"]["before"]["type"] == "dir"
    assert changes["/etc/keep"]["after"]["type"] == "file"
    assert set(changes["/etc/hosts"]["changed"]) >= {"size", "content", "xattrs"}
    assert changes["/etc/hosts"]["after"]["xattrs"] == {"user.comment": "changed"}
    assert changes["/bin/tool"]["changed"] == ["mode"]
    assert changes["/new/file"]["kind"] == "added"

    layer3 = _by_path(layerfs_json("diff", image, "-1", "--cache-dir", str(cache_dir))["diffs"][0])
    assert layer3["/data"]["kind"] == "opaque"
    assert layer3["/data/dir1"]["via"] == "opaque" and layer3["/data/dir1"]["entries"] == 2
    assert layer3["/data/big"]["via"] == "opaque"
    assert layer3["/data/only/here"]["kind"] == "added"


def test_two_images_equal_the_layer_range(umoci_layout: Path, cache_dir: Path) -> None:
    cache = ["--cache-dir", str(cache_dir)]
    images = layerfs_json("diff", f"{umoci_layout}:v1", f"{umoci_layout}:v3", *cache)
    layers = layerfs_json("diff", f"{umoci_layout}:v3", "1", "3", *cache)
    assert images["diffs"][0]["changes"] == layers["diffs"][0]["changes"]
    assert images["diffs"][0]["summary"] == layers["diffs"][0]["summary"]
    assert images["diffs"][0]["summary"]["removed"] >= 3


def test_text_output(stack_image: Path) -> None:
    result = run_layerfs("diff", str(stack_image), "2")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert "D  /gone  dir, 3 entries, 150B (by whiteout)" in lines
    assert "O  /opq  dir: made opaque" in lines
    assert lines[-1].startswith("3 added")


def test_unknown_layer_is_a_usage_error(stack_image: Path) -> None:
    result = run_layerfs("diff", str(stack_image), "7", "1")
    assert result.returncode == 2
    assert "layer 7" in result.stderr


def test_colour_only_on_a_terminal(stack_image: Path) -> None:
    import os
    import pty
    import subprocess
    import sys

    from tests.support.mounting import layerfs_env

    leader, follower = pty.openpty()
    env = layerfs_env()
    env.pop("NO_COLOR", None)
    env["TERM"] = "xterm"
    process = subprocess.Popen([sys.executable, "-m", "layerfs", "diff", str(stack_image), "2"],
                               stdout=follower, stderr=subprocess.DEVNULL, env=env)
    os.close(follower)
    output = b""
    while True:
        try:
            chunk = os.read(leader, 65536)
        except OSError:
            break
        if not chunk:
            break
        output += chunk
    process.wait(timeout=60)
    os.close(leader)
    assert b"\x1b[" in output and b"/gone" in output
