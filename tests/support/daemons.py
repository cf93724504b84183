"""Throw-away daemons (containerd, dockerd) with private paths, for the store tests.

A daemon is started with its output in ``<base>/<name>.log``, waited for until
its client answers (the test skips with the log's tail if it dies or does not
answer within a minute), and always stopped at the end, its mounts below
``base`` detached.
"""

from __future__ import annotations

import contextlib
import subprocess
import time
from pathlib import Path
from typing import Iterator, Sequence

import pytest

from layerfs.explore.mounts import stop_daemon
from tests.support.mounting import unmount_below

START_TIMEOUT = 60.0
STOP_TIMEOUT = 30.0


@contextlib.contextmanager
def throwaway_daemon(name: str, command: Sequence[str], ready: Sequence[str], base: Path,
                     poll: float = 0.3) -> Iterator[subprocess.Popen]:
    """Run ``command`` until the block ends; ``ready`` is a client command that succeeds
    once the daemon serves."""
    log_path = base / f"{name}.log"
    with open(log_path, "w") as log:
        daemon = subprocess.Popen(list(command), stdout=log, stderr=subprocess.STDOUT)
        try:
            deadline = time.monotonic() + START_TIMEOUT
            while subprocess.run(list(ready), capture_output=True).returncode != 0:
                if daemon.poll() is not None or time.monotonic() > deadline:
                    pytest.skip(f"{name} does not start here: {log_path.read_text()[-300:]}")
                time.sleep(poll)
            yield daemon
        finally:
            stop_daemon(daemon, timeout=STOP_TIMEOUT)
            unmount_below(base)
