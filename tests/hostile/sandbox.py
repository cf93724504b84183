"""A sealed place to feed layerfs a hostile image and prove it did no harm.

:class:`Sandbox` is a fresh directory holding a home (``HOME`` and
``XDG_CACHE_HOME`` point into it, so the default cache is used), the image,
a mountpoint and a *canary* tree that hostile entries aim at (``../`` paths,
absolute paths, symlinks). :meth:`Sandbox.refused` runs the CLI and checks
everything the issue asks of a refusal: exit 1, one line on stderr naming
what is wrong, no traceback, no mount, nothing half-done in the cache, and
nothing created, changed or removed anywhere outside the cache.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import stat
import subprocess
import sys
import tempfile
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
SCRATCH = os.environ.get("LAYERFS_TEST_TMP", "/var/tmp")
UNPRIVILEGED = (65534, 65534)  # nobody:nogroup


def tree_state(root: Path, *, skip: Path | None = None) -> dict[str, tuple]:
    """path -> (type, mode, size, content hash or link target) for every entry below root."""
    state: dict[str, tuple] = {}
    base = os.fsencode(root)
    skipped = os.fsencode(skip) if skip else None
    for dirpath, dirnames, filenames in os.walk(base):
        if skipped is not None:
            dirnames[:] = [d for d in dirnames if os.path.join(dirpath, d) != skipped]
        for name in dirnames + filenames:
            full = os.path.join(dirpath, name)
            st = os.lstat(full)
            detail: object = None
            if stat.S_ISREG(st.st_mode):
                with open(full, "rb") as data:
                    detail = hashlib.sha256(data.read()).hexdigest()
            elif stat.S_ISLNK(st.st_mode):
                detail = os.readlink(full)
            state[os.fsdecode(os.path.relpath(full, base))] = (
                stat.S_IFMT(st.st_mode), stat.S_IMODE(st.st_mode), st.st_size, detail)
    return state


class Sandbox:
    def __init__(self) -> None:
        self.root = Path(tempfile.mkdtemp(prefix="layerfs-hostile-", dir=SCRATCH))
        os.chmod(self.root, 0o755)
        self.home = self.root / "home"
        self.cache = self.home / ".cache" / "layerfs"
        self.canary = self.root / "canary"
        self.image = self.root / "image"
        self.mountpoint = self.root / "mnt"
        for directory in (self.home, self.canary / "etc", self.mountpoint):
            directory.mkdir(parents=True)
        (self.canary / "etc" / "passwd").write_text("canary:x:0:0\n")
        (self.canary / "keep").write_text("do not touch\n")
        self._before: dict[str, tuple] | None = None
        self._outside = self._outside_state()

    # -- running ---------------------------------------------------------------

    def env(self) -> dict[str, str]:
        env = dict(os.environ)
        env["PYTHONPATH"] = str(REPO_ROOT)
        env["HOME"] = str(self.home)
        env["XDG_CACHE_HOME"] = str(self.home / ".cache")
        env.pop("LAYERFS_MAX_LAYER_SIZE", None)
        env.pop("LAYERFS_MAX_ENTRIES", None)
        return env

    def seal(self) -> None:
        """Record the state everything is compared with (call once the image is written)."""
        self._before = tree_state(self.root, skip=self.home)

    def run(self, *args: str, env: dict[str, str] | None = None, user: tuple[int, int] | None = None,
            timeout: float = 300) -> subprocess.CompletedProcess:
        if self._before is None:
            self.seal()
        command = [sys.executable, "-m", "layerfs", *args]
        if user is not None:
            command = ["setpriv", f"--reuid={user[0]}", f"--regid={user[1]}", "--clear-groups",
                       *command]
        return subprocess.run(command, env={**self.env(), **(env or {})}, capture_output=True,
                              text=True, timeout=timeout, cwd=self.root)

    def mount(self, *extra: str, env: dict[str, str] | None = None,
              user: tuple[int, int] | None = None) -> subprocess.CompletedProcess:
        return self.run("mount", "--quiet", *extra, str(self.image), str(self.mountpoint),
                        env=env, user=user)

    def give_to(self, user: tuple[int, int]) -> None:
        """Let an unprivileged user write the home and read the image."""
        for path in (self.home, self.image, self.mountpoint):
            for dirpath, _, filenames in os.walk(path):
                os.chown(dirpath, *user)
                for name in filenames:
                    os.chown(os.path.join(dirpath, name), *user)

    # -- checks ----------------------------------------------------------------

    def refused(self, result: subprocess.CompletedProcess, pattern: str) -> str:
        """Assert a clean refusal matching ``pattern``; returns the error line."""
        assert result.returncode == 1, (result.returncode, result.stdout, result.stderr)
        assert "Traceback" not in result.stderr, result.stderr
        assert result.stderr.count("\n") == 1 and result.stderr.endswith("\n"), result.stderr
        line = result.stderr.rstrip("\n")
        assert line.startswith("layerfs: "), line
        assert re.search(pattern, line), (pattern, line)
        assert len(line) < 1000, f"error line of {len(line)} characters"
        self.assert_harmless()
        return line

    def assert_harmless(self) -> None:
        assert not os.path.ismount(self.mountpoint)
        self.assert_cache_clean()
        self.assert_outside_untouched()

    def assert_cache_clean(self) -> None:
        """No layer and no unpack leftovers: only empty bookkeeping dirs and lock files."""
        for sub in ("layers", "tmp", "images"):
            path = self.cache / sub
            assert not path.exists() or os.listdir(path) == [], (sub, os.listdir(path))
        if self.cache.exists():
            assert set(os.listdir(self.cache)) <= {"layers", "tmp", "locks", "images"}
            locks = self.cache / "locks"
            if locks.exists():
                assert all(name.endswith(".lock") for name in os.listdir(locks))
                assert all(os.path.getsize(locks / n) == 0 for n in os.listdir(locks))
        home_entries = {p.relative_to(self.home).as_posix() for p in self.home.rglob("*")}
        allowed = {".cache", ".cache/layerfs"} | {
            f".cache/layerfs/{sub}" for sub in ("layers", "tmp", "locks", "images")}
        extra = {p for p in home_entries if p not in allowed
                 and not (p.startswith(".cache/layerfs/locks/") and p.endswith(".lock"))}
        assert not extra, f"left in the home: {sorted(extra)[:5]}"

    def assert_outside_untouched(self) -> None:
        assert self._before is not None
        after = tree_state(self.root, skip=self.home)
        assert after == self._before, _difference(self._before, after)
        assert self._outside_state() == self._outside, "something appeared outside the sandbox"

    def _outside_state(self) -> set[str]:
        """Names in the places a naive extraction of an escaping entry would hit."""
        names = set()
        for place in ("/tmp", SCRATCH, "/etc", str(self.root.parent)):
            try:
                names |= {f"{place}/{n}" for n in os.listdir(place) if "escape" in n
                          or "evil" in n or "pwned" in n}
            except OSError:
                pass
        return names

    def cleanup(self) -> None:
        if os.path.ismount(self.mountpoint):
            subprocess.run(["umount", "-l", str(self.mountpoint)], capture_output=True)
        from layerfs.rmtree import remove_tree
        try:
            remove_tree(self.root)
        except OSError:
            shutil.rmtree(self.root, ignore_errors=True)


def _difference(before: dict, after: dict) -> str:
    added = sorted(set(after) - set(before))[:5]
    removed = sorted(set(before) - set(after))[:5]
    changed = sorted(k for k in set(before) & set(after) if before[k] != after[k])[:5]
    return f"outside the cache: added {added}, removed {removed}, changed {changed}"
