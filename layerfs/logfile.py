"""Where a background daemon logs when it is given no ``--log`` and the machine has no
syslog socket: a file per mount under ``$XDG_STATE_HOME/layerfs/`` (default
``~/.local/state/layerfs/``), so that an error of a daemon (a lazy pull that fails) is
never dropped unseen. A daemon that ends cleanly having logged nothing above INFO
removes its file, so that the directory holds what is worth reading, not one file
per mount ever made.
"""

from __future__ import annotations

import atexit
import os
import re
import sys
from pathlib import Path

SYSLOG_SOCKET = "/dev/log"


def state_dir() -> Path:
    base = os.environ.get("XDG_STATE_HOME") or os.path.expanduser("~/.local/state")
    return Path(base) / "layerfs"


def daemon_log_file(mountpoint: str) -> str | None:
    """The file the daemon of ``mountpoint`` (a resolved path: a stat of a live mount
    nobody serves yet would hang) logs to when syslog cannot take its log (None when it
    can); its path is said once on stderr."""
    if os.path.exists(SYSLOG_SOCKET):
        return None
    name = mountpoint.strip("/").replace("/", "-") or "root"
    path = state_dir() / f"mount-{name}-{os.getpid()}.log"
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    path.touch(mode=0o600)  # there once the path is said, before the daemon forks
    print(f"layerfs: no syslog here ({SYSLOG_SOCKET}); the daemon logs to {path}",
          file=sys.stderr)
    # Runs in the daemon only: the launching process leaves with os._exit.
    atexit.register(_remove_if_uneventful, path)
    return str(path)


_WORTH_KEEPING = re.compile(r" (WARNING|ERROR|CRITICAL): ")


def _remove_if_uneventful(path: Path) -> None:
    try:
        with open(path, errors="replace") as log:
            if any(_WORTH_KEEPING.search(line) for line in log):
                return
        path.unlink()
    except OSError:
        pass
