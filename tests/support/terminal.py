"""Running a command with stderr on a pseudo-terminal, as a user at a terminal sees it."""

from __future__ import annotations

import os
import pty
import subprocess
from typing import Sequence


def run_on_terminal(command: Sequence[str], env: dict[str, str], timeout: float = 300
                    ) -> tuple[int, bytes, bytes]:
    """(exit status, stdout, what the terminal on stderr got)."""
    master, slave = pty.openpty()
    try:
        process = subprocess.Popen(command, env={"TERM": "xterm-256color", "COLUMNS": "120",
                                                 **env},
                                   stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                   stderr=slave)
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
        stdout = process.stdout.read() if process.stdout else b""
        return process.wait(timeout=timeout), stdout, bytes(seen)
    finally:
        os.close(master)
        if slave != -1:
            os.close(slave)
