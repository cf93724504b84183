"""``layerfs browse`` in a real terminal: tmux runs it in a detached session and
``capture-pane`` shows what a user sees. The session is always killed afterwards."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from tests.support.mounting import REPO_ROOT, layerfs_env

pytest.importorskip("textual", reason="textual is not installed")
if shutil.which("tmux") is None:
    pytest.skip("tmux is not installed", allow_module_level=True)


def _tmux(*args: str, socket: str) -> subprocess.CompletedProcess:
    return subprocess.run(["tmux", "-L", socket, *args], capture_output=True, text=True,
                          timeout=30)


def _start(command: str, socket: str, session: str, scratch: Path) -> None:
    """A detached session of 160x45 running ``command`` on a private tmux server; the
    command starts once the window has that size (tmux may make it 80x24 first)."""
    go = scratch / "go"
    # COLUMNS/LINES from the test's environment would override the terminal's size.
    waiting = f"while [ ! -e {go} ]; do sleep 0.05; done; unset COLUMNS LINES; {command}"
    started = subprocess.run(["tmux", "-L", socket, "-f", "/dev/null", "new-session", "-d",
                              "-s", session, "-x", "160", "-y", "45", "-e",
                              "TERM=xterm-256color", "sh", "-c", waiting],
                             capture_output=True, text=True, timeout=30)
    assert started.returncode == 0, started.stderr
    _tmux("resize-window", "-t", session, "-x", "160", "-y", "45", socket=socket)
    size = _tmux("display-message", "-p", "-t", session, "#{window_width}x#{window_height}",
                 socket=socket).stdout.strip()
    assert size == "160x45", size
    go.touch()


def _capture(session: str, socket: str) -> str:
    return _tmux("capture-pane", "-p", "-t", session, socket=socket).stdout


def _wait_for(session: str, socket: str, wanted: list[str], timeout: float = 90) -> str:
    deadline = time.monotonic() + timeout
    screen = ""
    while time.monotonic() < deadline:
        screen = _capture(session, socket)
        if all(text in screen for text in wanted):
            return screen
        time.sleep(0.2)
    raise AssertionError(f"not on screen after {timeout}s: {wanted}\n{screen}")


def test_browse_in_tmux(stack_image: Path, tmp_path: Path) -> None:
    socket = f"layerfs-browse-{uuid.uuid4().hex[:8]}"  # a private tmux server
    session = "browse"
    status = tmp_path / "status"
    env = layerfs_env()
    command = (f"cd {REPO_ROOT} && PYTHONPATH={env.get('PYTHONPATH', '')} {sys.executable} "
               f"-m layerfs browse {stack_image}; echo $? > {status}; sleep 60")
    try:
        _start(command, socket, session, tmp_path)
        # The layers, the tree's top names, the status line, the help line; and once
        # the top layer's marks are in, /copy, which its whiteout removed.
        _wait_for(session, socket, ["Layers", "bin/", "etc/", "opq/", "swap", "efficiency",
                                    "quit", "removed (dir, 2 entries) by whiteout"])
        # Expand /etc: its names appear, with the marks of the top layer.
        for _ in range(2):
            _tmux("send-keys", "-t", session, "j", socket=socket)
        _tmux("send-keys", "-t", session, "Space", socket=socket)
        screen = _wait_for(session, socket, ["hosts", "passwd", "new"])
        lines = screen.splitlines()
        assert any("M " in line and "hosts" in line for line in lines), screen
        assert any("A " in line and "new" in line for line in lines), screen
        _tmux("send-keys", "-t", session, "q", socket=socket)
        deadline = time.monotonic() + 30
        while not status.exists() and time.monotonic() < deadline:
            time.sleep(0.1)
        assert status.read_text().strip() == "0"
    finally:
        _tmux("kill-server", socket=socket)
    assert os.path.exists(stack_image)


def test_layer_commands_in_tmux(umoci_layout: Path, cache_dir: Path, tmp_path: Path) -> None:
    socket = f"layerfs-browse-{uuid.uuid4().hex[:8]}"
    session = "browse"
    env = layerfs_env()
    command = (f"cd {REPO_ROOT} && PYTHONPATH={env.get('PYTHONPATH', '')} {sys.executable} "
               f"-m layerfs browse --cache-dir {cache_dir} {umoci_layout}:v3; sleep 60")
    try:
        _start(command, socket, session, tmp_path)
        _wait_for(session, socket, ["base files", "edit things", "opaque data", "data/",
                                    "etc/", "new/", "efficiency"])
    finally:
        _tmux("kill-server", socket=socket)
