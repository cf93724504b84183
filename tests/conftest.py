"""Shared fixtures: a scratch area on a real filesystem, and mount helpers."""

from __future__ import annotations

import os
import pwd
import shutil
import stat
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
from hypothesis import settings

from tests.support.mounting import REPO_ROOT, kernel_overlay_available

# CI runs the same examples every time (a failure there is reproducible here
# with CI=true); interactive runs explore new ones.
settings.register_profile("ci", derandomize=True, database=None, print_blob=True)
if os.environ.get("CI"):
    settings.load_profile("ci")

# Layers must live on a filesystem with xattrs and mknod (not tmpfs-dependent
# sizes); /var/tmp is on disk on Debian. Override with LAYERFS_TEST_TMP.
_SCRATCH = os.environ.get("LAYERFS_TEST_TMP", "/var/tmp")


@pytest.fixture
def scratch():
    """A fresh directory on a disk filesystem, removed afterwards."""
    path = Path(tempfile.mkdtemp(prefix="layerfs-test-", dir=_SCRATCH))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def needs_kernel_overlay():
    reason = kernel_overlay_available()
    if reason is not None:
        pytest.skip(f"kernel overlay comparison impossible: {reason}")


@pytest.fixture
def needs_root():
    if os.geteuid() != 0:
        pytest.skip("needs root (device nodes, foreign owners, trusted.* xattrs)")


# One user per test session (the session's pid in its name): two suites running
# at once on one machine must not share a user, its /etc/subuid lines or its
# removal. Users a killed session left behind are removed by the next one.
_USER_PREFIX = "layerfs-test-"
UNPRIVILEGED = f"{_USER_PREFIX}{os.getpid()}"


def _remove_users_of_ended_sessions() -> None:
    for entry in pwd.getpwall():
        pid = entry.pw_name.removeprefix(_USER_PREFIX)
        if entry.pw_name.startswith(_USER_PREFIX) and pid.isdigit() and \
                not os.path.exists(f"/proc/{pid}"):
            _remove_user(entry.pw_name)


@pytest.fixture
def unprivileged_user():
    """A throw-away user that can run the project's Python, or a skip saying why not."""
    if os.geteuid() != 0:
        user = pwd.getpwuid(os.geteuid()).pw_name
        yield None if user else pytest.skip("no user name")
        return
    if shutil.which("useradd") is None or shutil.which("runuser") is None:
        pytest.skip("useradd/runuser not available to make a temporary user")
    _remove_users_of_ended_sessions()
    created = subprocess.run(["useradd", "-M", "-s", "/bin/false", UNPRIVILEGED],
                             capture_output=True).returncode == 0
    try:
        probe = f"import sys; sys.path.insert(0, {str(REPO_ROOT)!r}); import layerfs.cli"
        check = subprocess.run(["runuser", "-u", UNPRIVILEGED, "--", sys.executable, "-c", probe],
                               capture_output=True, text=True)
        if check.returncode != 0:
            pytest.skip("a normal user cannot run this Python or read the repository here: "
                        + (check.stderr.strip().splitlines() or ["?"])[-1])
        # Debian and Ubuntu ship /dev/fuse as 0666; some sandboxes make it 0600.
        # Grant what a normal machine grants, for the test's duration only.
        fuse_mode = stat.S_IMODE(os.stat("/dev/fuse").st_mode)
        os.chmod("/dev/fuse", fuse_mode | 0o666)
        try:
            yield UNPRIVILEGED
        finally:
            os.chmod("/dev/fuse", fuse_mode)
    finally:
        if created:
            _remove_user(UNPRIVILEGED)


def _remove_user(name: str) -> None:
    # userdel refuses while a process of the user still runs: a daemon the test
    # stopped may take a moment to exit.
    for _ in range(50):
        if subprocess.run(["userdel", name], capture_output=True).returncode != 8:
            return
        time.sleep(0.1)


ENGINES = ("native", "pyfuse3")


@pytest.fixture(params=ENGINES)
def each_engine(request, monkeypatch):
    """Run the test once on each FUSE engine: every layerfs mount it starts inherits
    LAYERFS_ENGINE (the kernel-differential and upper suites use it)."""
    monkeypatch.setenv("LAYERFS_ENGINE", request.param)
    return request.param
