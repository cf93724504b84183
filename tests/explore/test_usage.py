"""``layerfs usage``: bytes per layer, wasted bytes, duplicates, efficiency, CI thresholds."""

from __future__ import annotations

from pathlib import Path

from tests.explore.conftest import layerfs_json
from tests.explore.images import BIG, File, layer_dirs_image
from tests.support.mounting import run_layerfs


def test_bytes_and_waste_per_layer(stack_image: Path) -> None:
    doc = layerfs_json("usage", str(stack_image))
    layers = [(u["files"], u["bytes"], u["wasted_bytes"]) for u in doc["layers"]]
    assert layers == [(9, 5174, 5168), (5, 5035, 20), (2, 33, 0)]
    assert doc["total_bytes"] == 5174 + 5035 + 33
    assert doc["wasted_bytes"] == 5188
    assert doc["visible_bytes"] == doc["total_bytes"] - doc["wasted_bytes"]
    assert doc["layers"][1]["whiteouts"] == 1 and doc["layers"][1]["opaque_dirs"] == 1
    offenders = {o["path"]: o for o in doc["offenders"]}
    assert list(offenders)[0] == "/tmp/big"
    assert offenders["/tmp/big"]["hidden_by"]["how"] == "whiteout"
    assert offenders["/gone"]["wasted_bytes"] == 150
    assert offenders["/etc/hosts"]["layers"] == [1, 2]
    assert offenders["/etc/hosts"]["versions"] == 3 and offenders["/etc/hosts"]["visible"]
    assert offenders["/opq"]["hidden_by"]["how"] == "opaque"
    assert offenders["/swap"]["hidden_by"]["how"] == "replaced"
    big = [d for d in doc["duplicates"] if d["size"] == len(BIG)][0]
    assert {(c["layer"], c["path"], c["visible"]) for c in big["copies"]} == {
        (1, "/tmp/big", False), (2, "/copy/big-again", True)}
    assert big["duplicate_bytes"] == 0  # the hidden copy is already wasted
    assert doc["ci"] is None


def test_visible_duplicates_lower_the_efficiency(tmp_path: Path) -> None:
    image = layer_dirs_image(tmp_path / "dup", layers=[{b"a/data": File(b"x" * 1000)},
                                                       {b"b/data": File(b"x" * 1000)}])
    doc = layerfs_json("usage", str(image))
    assert doc["wasted_bytes"] == 0
    assert doc["duplicate_bytes"] == 1000
    assert doc["efficiency"] == 0.5


def test_ci_thresholds(stack_image: Path) -> None:
    failing = run_layerfs("usage", str(stack_image), "--ci")
    assert failing.returncode == 3
    assert "FAIL  lowest-efficiency" in failing.stdout
    doc = layerfs_json("usage", str(stack_image), "--ci", "--highest-wasted-bytes", "10M",
                       "--lowest-efficiency", "40%")
    assert doc["ci"]["passed"]
    assert {r["rule"] for r in doc["ci"]["rules"]} == {"highest-wasted-bytes",
                                                      "lowest-efficiency"}
    doc = layerfs_json("usage", str(stack_image), "--ci", "--highest-wasted-percent", "20",
                       expect=3)
    assert doc["ci"]["rules"] == [{"rule": "highest-wasted-percent", "threshold": 20.0,
                                   "value": doc["ci"]["rules"][0]["value"], "passed": False}]
    assert run_layerfs("usage", str(stack_image), "--ci", "--highest-wasted-bytes",
                       "1K").returncode == 3


def test_clean_image_passes(tmp_path: Path) -> None:
    image = layer_dirs_image(tmp_path / "clean", layers=[{b"a": File(b"1")}, {b"b": File(b"22")}])
    result = run_layerfs("usage", str(image), "--ci")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "CI passed" in result.stdout


def test_umoci_image(umoci_layout: Path, cache_dir: Path) -> None:
    doc = layerfs_json("usage", f"{umoci_layout}:v3", "--cache-dir", str(cache_dir))
    offenders = {o["path"]: o for o in doc["offenders"]}
    assert offenders["/data"]["wasted_bytes"] == len(BIG) + len("dir1/a\n")
    assert offenders["/data"]["hidden_by"]["how"] == "opaque"
    assert doc["layers"][2]["created_by"] == "opaque data"
    assert doc["wasted_bytes"] >= len(BIG)
