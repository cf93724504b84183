"""Inputs that once crashed a parser, kept and replayed by tests/fuzz/test_regressions.py.

A fuzz test that meets an exception other than a LayerfsError saves its input here as
``<kind>/crash.bin`` before failing (overwritten while hypothesis shrinks, so what stays is
the minimal example); fix the bug and keep the file under a name of its own
(``keep()`` renames it to ``<kind>/<sha256 prefix>.bin``).
"""

from __future__ import annotations

import hashlib
from pathlib import Path

HERE = Path(__file__).parent


def save_regression(kind: str, data: bytes) -> Path:
    directory = HERE / kind
    directory.mkdir(exist_ok=True)
    path = directory / "crash.bin"
    path.write_bytes(data)
    return path


def keep(kind: str) -> Path:
    """Give the last crash of ``kind`` its permanent name."""
    crash = HERE / kind / "crash.bin"
    kept = crash.with_name(f"{hashlib.sha256(crash.read_bytes()).hexdigest()[:16]}.bin")
    crash.rename(kept)
    return kept


def regressions(kind: str) -> list[Path]:
    directory = HERE / kind
    return sorted(directory.glob("*.bin")) if directory.is_dir() else []
