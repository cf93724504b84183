"""What every command shares: --json where a list is printed, git's --exit-code for
diff, a subcommand's own usage on an unknown flag, one spelling of sizes and counts."""

from __future__ import annotations

import json
import re

from tests.explore.images import File, layer_dirs_image
from tests.support.mounting import run_layerfs


def test_cache_ls_json_agrees_with_the_table(umoci_layout, cache_dir):
    assert run_layerfs("inspect", "--cache-dir", str(cache_dir), f"{umoci_layout}:v3"
                       ).returncode == 0
    assert run_layerfs("export", "--cache-dir", str(cache_dir), f"{umoci_layout}:v3",
                       "-o", "/dev/null").returncode == 0  # unpacks the layers
    doc = json.loads(run_layerfs("cache", "ls", "--json", "--cache-dir", str(cache_dir)).stdout)
    table = run_layerfs("cache", "ls", "--cache-dir", str(cache_dir)).stdout.splitlines()
    assert len(doc["layers"]) == 3 and table[-1].startswith("3 layers, ")
    assert sorted(layer["chain_id"][7:19] for layer in doc["layers"]) == \
        sorted(line.split()[0] for line in table[1:-1])
    assert all(layer["images"] == [f"{umoci_layout} (v3)"] for layer in doc["layers"])
    assert doc["lazy_skeletons"] == [] and doc["partial_downloads"] == []


def test_diff_exit_code_is_gits(stack_image):
    changed = run_layerfs("diff", "--exit-code", str(stack_image), "1", "3")
    assert changed.returncode == 1 and changed.stdout
    same = run_layerfs("diff", "--exit-code", str(stack_image), "2", "2")
    assert same.returncode == 0, same.stderr
    assert run_layerfs("diff", str(stack_image), "1", "3").returncode == 0  # without the flag


def test_an_unknown_flag_prints_the_subcommands_usage(stack_image):
    for command in (["inspect", str(stack_image)], ["cache", "ls"], ["diff", str(stack_image)],
                    ["ls", str(stack_image)]):
        result = run_layerfs(*command, "--no-such-flag")
        assert result.returncode == 2
        usage = f"usage: layerfs {' '.join(c for c in command if c != str(stack_image))} "
        assert result.stderr.startswith(usage), result.stderr
        assert "unrecognized arguments: --no-such-flag" in result.stderr


def test_one_spelling_of_sizes_and_counts(tmp_path, cache_dir):
    one = layer_dirs_image(tmp_path / "one", layers=[{b"f": File(b"x" * 3000)}])
    inspect = run_layerfs("inspect", str(one)).stdout
    assert "(layer-dirs, 1 layer, bottom first)" in inspect and "1 layers" not in inspect
    texts = [inspect, run_layerfs("usage", str(one)).stdout,
             run_layerfs("diff", str(one)).stdout,
             run_layerfs("cache", "ls", "--cache-dir", str(cache_dir)).stdout]
    for text in texts:
        assert not re.search(r"\d(\.\d)? ?(KiB|MiB|GiB)\b", text), text
        assert not re.search(r"\b1 (layers|entries|files)\b", text), text
    assert re.search(r"\b2\.9K\b", inspect) or "3000B" in inspect
