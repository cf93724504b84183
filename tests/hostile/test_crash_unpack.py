"""kill -9 of an unpacking process at random instants, again and again: after every kill the
cache holds only complete, correct layers (nothing corrupt is ever trusted), and the next
unpack ends with exactly what a clean unpack gives, leaving no debris."""

from __future__ import annotations

import hashlib
import json
import os
import random
import subprocess
import sys
import time
from pathlib import Path

from layerfs.sidecar import load_sidecar
from layerfs.unpack import LayerCache
from tests.images.tarbuild import d, f, gzipped, hard, layer_tar, sym

from . import rawtar
from .sandbox import REPO_ROOT, Sandbox, tree_state

KILLS = 12
UNPACK = """
import sys
from layerfs.images import open_image
from layerfs.unpack import LayerCache
open_image(sys.argv[1], cache=LayerCache(sys.argv[2]), quiet=True)
"""


def _layers(seed: int) -> list[bytes]:
    rng = random.Random(seed)
    noise = rng.randbytes(1 << 20)
    tars = []
    for number in range(2):
        entries = [d(f"l{number}")]
        for index in range(1500):
            parent = f"l{number}/d{index % 40}"
            size = rng.choice((0, 100, 3000, 20000, 200000))
            start = rng.randrange(len(noise) - size)
            entries.append(f(f"{parent}/f{index}", noise[start:start + size],
                             mode=rng.choice((0o644, 0o600, 0o4755)), uid=rng.choice((0, 1000))))
            if index % 50 == 0:
                entries.append(sym(f"{parent}/s{index}", f"f{index}"))
                entries.append(hard(f"{parent}/h{index}", f"{parent}/f{index}"))
        tars.append(layer_tar(entries))
    return tars


def _layer_state(directory: Path) -> tuple:
    sidecar = load_sidecar(directory / "meta.json")
    info = {k: v for k, v in sidecar.info.items() if k not in ("unpacked_at", "label")}
    return (tree_state(directory / "root"), json.dumps(sidecar.to_json()["stat"], sort_keys=True),
            json.dumps(info, sort_keys=True))


def _check_trusted_layers(cache: Path, reference: dict[str, tuple]) -> list[str]:
    """Every layer the cache would hand out is complete and equal to a clean unpack."""
    layers_dir = cache / "layers"
    present = sorted(os.listdir(layers_dir)) if layers_dir.exists() else []
    for name in present:
        assert name in reference, f"unknown layer {name}"
        assert (layers_dir / name / "meta.json").is_file(), f"layer {name} without its sidecar"
        assert _layer_state(layers_dir / name) == reference[name], f"layer {name} differs"
    records = cache / "images"
    for record in records.glob("*.json") if records.exists() else []:
        json.loads(record.read_text())  # written whole or not at all
    return present


def test_repeated_kill_9_during_unpack(sandbox: Sandbox) -> None:
    tars = _layers(seed=11)
    rawtar.oci_layout(sandbox.image, [gzipped(t) for t in tars],
                      ["sha256:" + hashlib.sha256(t).hexdigest() for t in tars])
    env = dict(sandbox.env(), PYTHONPATH=str(REPO_ROOT))

    def start(cache: Path) -> subprocess.Popen:
        return subprocess.Popen([sys.executable, "-c", UNPACK, str(sandbox.image), str(cache)],
                                env=env, stderr=subprocess.PIPE)

    clean_cache = sandbox.root / "clean-cache"
    began = time.monotonic()
    clean = start(clean_cache)
    assert clean.wait(timeout=300) == 0, clean.stderr.read() if clean.stderr else ""
    duration = time.monotonic() - began
    reference = {name: _layer_state(clean_cache / "layers" / name)
                 for name in os.listdir(clean_cache / "layers")}
    assert len(reference) == 2

    cache = sandbox.cache
    rng = random.Random(5)
    interrupted = 0
    for _ in range(KILLS):
        process = start(cache)
        time.sleep(rng.uniform(0.05, duration * 1.1))
        process.kill()
        process.wait(timeout=30)
        if process.stderr:
            process.stderr.close()
        if process.returncode == -9 and (cache / "tmp").exists() and any(
                not n.endswith(".lock") for n in os.listdir(cache / "tmp")):
            interrupted += 1
        present = _check_trusted_layers(cache, reference)
        if len(present) == 2 or rng.random() < 0.3:  # unpack again from scratch, sometimes
            held = LayerCache(cache)
            for name in present:
                assert held.remove_layer(held.layer("sha256:" + name))
    assert interrupted >= KILLS // 3, f"only {interrupted} kills landed inside an unpack"

    final = start(cache)
    assert final.wait(timeout=300) == 0, final.stderr.read() if final.stderr else ""
    assert _check_trusted_layers(cache, reference) == sorted(reference)
    assert [n for n in os.listdir(cache / "tmp")] == []  # the dead unpacks' debris is gone
