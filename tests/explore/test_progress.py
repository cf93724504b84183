"""Progress on a terminal (rich), none when stderr is not one, no colour with NO_COLOR."""

from __future__ import annotations

import re
import subprocess
import tarfile
from pathlib import Path

from tests.support.mounting import layerfs_command, layerfs_env
from tests.support.terminal import run_on_terminal

COLOUR = re.compile(rb"\x1b\[[0-9;]*3[0-9;]*m")  # an SGR sequence setting a colour


def _upper(tmp_path: Path) -> Path:
    upper = tmp_path / "upper"
    (upper / "dir").mkdir(parents=True)
    for number in range(50):
        (upper / "dir" / f"file{number}").write_bytes(b"x" * 20000)
    return upper


def test_commit_shows_progress_on_a_terminal(tmp_path):
    upper = _upper(tmp_path)
    command = layerfs_command("commit", str(upper), "-o", str(tmp_path / "layer.tar"))
    status, stdout, terminal = run_on_terminal(command, layerfs_env())
    assert status == 0, terminal
    assert b"committing " + str(upper).encode() in terminal and b"52 entries" in terminal
    assert b"52 entries" in stdout  # the summary, on stdout
    assert COLOUR.search(terminal)

    status, _, plain = run_on_terminal(command, {**layerfs_env(), "NO_COLOR": "1"})
    assert status == 0 and b"52 entries" in plain and not COLOUR.search(plain)

    quiet = run_on_terminal([*command, "--quiet"], layerfs_env())
    assert quiet[0] == 0 and b"committing" not in quiet[2]


def test_export_shows_progress_on_a_terminal(tmp_path):
    upper = _upper(tmp_path)
    out = tmp_path / "rootfs.tar"
    command = layerfs_command("export", str(upper), "-o", str(out))
    status, _, terminal = run_on_terminal(command, layerfs_env())
    assert status == 0, terminal
    with tarfile.open(out) as tar:
        written = len(tar.getmembers())
    assert written >= 50
    assert b"exporting " in terminal and f"{written} entries".encode() in terminal

    quiet = run_on_terminal([*command, "--quiet"], layerfs_env())
    assert quiet[0] == 0 and b"exporting" not in quiet[2]


def test_no_progress_when_stderr_is_not_a_terminal(tmp_path):
    upper = _upper(tmp_path)
    result = subprocess.run(layerfs_command("commit", str(upper), "-o",
                                            str(tmp_path / "layer.tar")),
                            env=layerfs_env(), capture_output=True)
    assert result.returncode == 0 and result.stderr == b""
    result = subprocess.run(layerfs_command("export", str(upper), "-o",
                                            str(tmp_path / "rootfs.tar")),
                            env=layerfs_env(), capture_output=True)
    assert result.returncode == 0 and result.stderr == b""
