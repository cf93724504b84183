"""Every input a fuzz test once crashed on, replayed: each must now parse or fail with a
LayerfsError (tests/fuzz/regressions/<kind>/*.bin)."""

from __future__ import annotations

from pathlib import Path

import pytest

from .regressions import HERE, regressions
from .test_fuzz_images import REPLAY
from .test_fuzz_unpack import unpack_once

KINDS = sorted(p.name for p in HERE.iterdir() if p.is_dir() and not p.name.startswith("_"))
CASES = [(kind, path) for kind in KINDS for path in regressions(kind)]


@pytest.mark.parametrize("kind, path", CASES, ids=[f"{k}/{p.name}" for k, p in CASES])
def test_regression_input(tmp_path: Path, kind: str, path: Path) -> None:
    data = path.read_bytes()
    if kind == "tar":
        (tmp_path / "canary").mkdir()
        (tmp_path / "canary" / "keep").write_text("keep")
        unpack_once(tmp_path, data)
    else:
        REPLAY[kind](tmp_path, kind, data)


def test_every_kind_has_a_replay() -> None:
    assert set(KINDS) <= set(REPLAY) | {"tar"}
