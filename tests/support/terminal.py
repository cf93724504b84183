"""Running a command with stderr (or stdout) on a pseudo-terminal, as a user at a
terminal sees it."""

from __future__ import annotations

import os
import pty
import subprocess
from typing import Sequence


def run_on_terminal(command: Sequence[str], env: dict[str, str], timeout: float = 300,
                    *, stream: str = "stderr") -> tuple[int, bytes, bytes]:
    """(exit status, what the other stream got, what the terminal got). ``stream``:
    which of stderr and stdout is the terminal; the other is a pipe."""
    master, slave = pty.openpty()
    try:
        on_terminal = {"stdout": slave} if stream == "stdout" else {"stderr": slave}
        piped = "stderr" if stream == "stdout" else "stdout"
        process = subprocess.Popen(command, env={"TERM": "xterm-256color", "COLUMNS": "120",
                                                 **env},
                                   stdin=subprocess.DEVNULL,
                                   **{piped: subprocess.PIPE, **on_terminal})
        os.close(slave)
        slave = -1
        seen = bytearray()
        while True:
            try:
                chunk = os.read(master, 65536)
            except OSError:  # EIO: every writer closed the terminal
                break
            if not chunk:
                break
            seen += chunk
        other = getattr(process, piped)
        return process.wait(timeout=timeout), other.read() if other else b"", bytes(seen)
    finally:
        os.close(master)
        if slave != -1:
            os.close(slave)
