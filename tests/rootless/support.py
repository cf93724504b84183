"""A normal user, an image with root-only files, and layerfs run as that user.

The image is an OCI layout written with tarfile (real owners in the tars, whoever
runs the tests): a 0600 root file, a 0700 root dir, a setuid binary, a 0700 dir and
0600 file of uid 1000, a dir to rename; tag ``tools`` adds a few host binaries and
their libraries for ``--chroot``.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import pwd
import re
import shutil
import signal
import subprocess
import sys
import tarfile
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import pytest

from tests.images.tarbuild import d, f, layer_tar, write_oci_layout
from tests.support.mounting import REPO_ROOT

IMAGE_FILES = {
    # path: (uid, gid, mode, data or None for a dir)
    "etc": (0, 0, 0o755, None),
    "etc/keep.txt": (0, 0, 0o600, b"root only\n"),
    "secret": (0, 0, 0o700, None),
    "secret/key": (0, 0, 0o644, b"in a 0700 dir\n"),
    "bin": (0, 0, 0o755, None),
    "bin/su": (0, 0, 0o4755, b"#!/bin/false setuid\n"),
    "home": (0, 0, 0o755, None),
    "home/u": (1000, 1000, 0o700, None),
    "home/u/private": (1000, 1000, 0o600, b"uid 1000's\n"),
    "data": (0, 0, 0o755, None),
    "data/sub": (0, 0, 0o755, None),
    "data/sub/file": (0, 0, 0o644, b"to be moved\n"),
    "gone.txt": (0, 0, 0o644, b"to be deleted\n"),
}
TOOLS = ("/bin/sh", "/bin/cat", "/usr/bin/stat")


def _entries(files: dict) -> list:
    return [d(path, mode, uid=uid, gid=gid) if data is None
            else f(path, data, mode, uid=uid, gid=gid)
            for path, (uid, gid, mode, data) in files.items()]


def _tools_layer() -> bytes:
    """TOOLS and the libraries ldd names, at their paths (for a chroot)."""
    paths = set(TOOLS)
    for tool in TOOLS:
        listing = subprocess.run(["ldd", tool], capture_output=True, text=True).stdout
        paths.update(re.findall(r"(/\S+) \(0x", listing))
    entries, dirs = [], set()
    for path in sorted(paths):
        parts = path.strip("/").split("/")
        for depth in range(1, len(parts)):
            dirs.add("/".join(parts[:depth]))
        entries.append(f(path.strip("/"), Path(path).resolve().read_bytes(), 0o755))
    return layer_tar([d(name) for name in sorted(dirs)] + entries)


def build_image(layout: Path) -> None:
    base = layer_tar(_entries(IMAGE_FILES))
    images = {"img": [base]}
    if all(os.path.exists(tool) for tool in TOOLS) and shutil.which("ldd"):
        images["tools"] = [base, _tools_layer()]
    write_oci_layout(layout, images)


@dataclass
class User:
    """Runs commands as the test's normal user, in a scratch home of its own."""

    name: str | None
    """None: the tests already run as a normal user."""
    uid: int
    gid: int
    home: Path
    work: Path
    """A directory the user owns, for mountpoints, upper dirs, outputs."""

    def env(self) -> list[str]:
        return ["env", "-u", "XDG_RUNTIME_DIR", f"HOME={self.home}",
                f"XDG_CACHE_HOME={self.home}/.cache", f"PYTHONPATH={REPO_ROOT}",
                f"PATH={os.path.dirname(sys.executable)}:/usr/sbin:/usr/bin:/sbin:/bin"]

    def command(self, *args: str) -> list[str]:
        prefix = ["runuser", "-u", self.name, "--"] if self.name else []
        return [*prefix, *self.env(), *args]

    def run(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess:
        """Run as the user; on a timeout its whole process group is killed (a namespace
        dies with its first processes)."""
        process = subprocess.Popen(self.command(*args), stdout=subprocess.PIPE,
                                   stderr=subprocess.PIPE, text=True, start_new_session=True)
        try:
            stdout, stderr = process.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.communicate()
            raise
        return subprocess.CompletedProcess(process.args, process.returncode, stdout, stderr)

    def layerfs(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess:
        return self.run(sys.executable, "-m", "layerfs", *args, timeout=timeout)

    def popen_layerfs(self, *args: str) -> subprocess.Popen:
        return subprocess.Popen(self.command(sys.executable, "-m", "layerfs", *args),
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def make_user(scratch: Path, name: str | None) -> User:
    if name is None:
        uid, gid = os.geteuid(), os.getegid()
    else:
        entry = pwd.getpwnam(name)
        uid, gid = entry.pw_uid, entry.pw_gid
    os.chmod(scratch, 0o755)
    home, work = scratch / "home", scratch / "work"
    for path in (home, work):
        path.mkdir()
        if name is not None:
            os.chown(path, uid, gid)
    return User(name, uid, gid, home, work)


# -- subordinate ids ------------------------------------------------------------------

def granted(user: User, path: str) -> list[tuple[int, int]]:
    """The ranges ``path`` (/etc/subuid or /etc/subgid) grants ``user``."""
    from layerfs.userns import subordinate_ranges
    try:
        text = Path(path).read_text()
    except OSError:
        return []
    name = user.name or pwd.getpwuid(user.uid).pw_name
    return subordinate_ranges(text, name, user.uid)


TEST_RANGE = (400000, 65536)
SUBUID, SUBGID = "/etc/subuid", "/etc/subgid"


@contextlib.contextmanager
def subordinate_ids(user: User, wanted: bool) -> Iterator[None]:
    """/etc/subuid and /etc/subgid grant ``user`` a range (``wanted``) or none, for the
    block's duration (as root; put back after). The files are edited under the shadow
    tools' lock, not with usermod, which refuses while the user runs processes (other
    tests' mounts)."""
    uids, gids = granted(user, SUBUID), granted(user, SUBGID)
    if wanted == bool(uids and gids):
        yield
        return
    if user.name is None or os.geteuid() != 0:
        pytest.skip("cannot change /etc/subuid here (not root): the test needs the user "
                    f"{'with' if wanted else 'without'} subordinate ids")
    start, count = TEST_RANGE
    line = f"{user.name}:{start}:{count}"
    saved = {path: _edit_subids(path, user, [line] if wanted else [])
             for path in (SUBUID, SUBGID)}
    try:
        yield
    finally:
        for path, lines in saved.items():
            _edit_subids(path, user, lines)


def _edit_subids(path: str, user: User, lines: list[str]) -> list[str]:
    """Replace ``user``'s lines of ``path`` with ``lines``; its previous lines."""
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.lckpwdf() != 0:
        raise OSError(ctypes.get_errno(), "lckpwdf")
    try:
        try:
            old = Path(path).read_text().splitlines()
        except FileNotFoundError:
            old = []
        mine = [entry for entry in old if entry.split(":", 1)[0] in (user.name, str(user.uid))]
        kept = [entry for entry in old if entry not in mine]
        temp = Path(path + ".layerfs-test")
        temp.write_text("".join(f"{entry}\n" for entry in kept + lines))
        os.chmod(temp, 0o644)
        os.replace(temp, path)
        return mine
    finally:
        libc.ulckpwdf()


def needs_tools(tool: str) -> None:
    if shutil.which(tool) is None:
        pytest.skip(f"{tool} is not installed (apt install uidmap)")


def layer_members(tar_path: Path) -> dict[str, tarfile.TarInfo]:
    with tarfile.open(tar_path) as tar:
        return {member.name.removeprefix("./").rstrip("/"): member for member in tar}
