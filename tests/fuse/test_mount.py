"""The native engine on real mounts: memfs (tests/fuse/memfs.py) mounted with mount(2) as root
and with fusermount3 as a normal user, used through real syscalls and programs, then
unmounted; a killed daemon's mount cleared; warm walks answered by the kernel's caches."""

from __future__ import annotations

import contextlib
import errno
import os
import pwd
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Iterator

import pytest

from layerfs.errors import MountError
from layerfs.fuse import mounting
from layerfs.fuse.engine import NativeEngine
from tests.fuse.memfs import MemFS
from tests.support.mounting import REPO_ROOT, force_unmount, is_mounted, layerfs_env, stop_daemon

needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="mount(2) of FUSE needs root")
needs_fusermount = pytest.mark.skipif(shutil.which("fusermount3") is None,
                                      reason="fusermount3 is not installed")


@contextlib.contextmanager
def memfs_mounted(mountpoint: Path, *args: str, user: str | None = None,
                  log: Path | None = None) -> Iterator[subprocess.Popen]:
    """``python -m tests.fuse.memfs MOUNTPOINT ARGS`` until the block ends, then unmounted."""
    command = [sys.executable, "-m", "tests.fuse.memfs", str(mountpoint), *args]
    if user is not None:
        command = ["runuser", "-u", user, "--", "env", f"PYTHONPATH={REPO_ROOT}", *command]
    with open(log or os.devnull, "w") as errors:
        process = subprocess.Popen(command, env=layerfs_env(), cwd="/", stdin=subprocess.DEVNULL,
                                   stdout=subprocess.DEVNULL, stderr=errors)
        try:
            deadline = time.monotonic() + 30
            while not is_mounted(mountpoint):
                if process.poll() is not None:
                    detail = log.read_text() if log else ""
                    raise RuntimeError(f"memfs exited with {process.returncode}: {detail}")
                if time.monotonic() > deadline:
                    raise TimeoutError(f"{mountpoint} not mounted after 30 s")
                time.sleep(0.02)
            yield process
        finally:
            stop_daemon(process)
            force_unmount(mountpoint)


def exercise(root: Path) -> None:
    """Real syscalls on a fresh memfs mount, each checked against what it must show."""
    assert (root / "hello").read_bytes() == b"hello world\n"
    assert sorted(os.listdir(root)) == ["d0000", "d0001", "d0002", "hello"]
    new = root / "new"
    new.write_bytes(b"0123456789")
    with open(new, "r+b", buffering=0) as f:
        f.seek(4)
        f.write(b"xx")
        assert os.pread(f.fileno(), 4, 3) == b"3xx6"
    os.truncate(new, 5)
    assert new.read_bytes() == b"0123x"
    fd = os.open(new, os.O_WRONLY | os.O_TRUNC)
    os.close(fd)
    assert new.stat().st_size == 0 and new.read_bytes() == b""
    new.write_bytes(b"abc")
    os.rename(new, root / "moved")
    os.replace(root / "moved", root / "hello")
    assert (root / "hello").read_bytes() == b"abc" and not new.exists()
    os.symlink("hello", root / "link")
    assert os.readlink(root / "link") == "hello" and (root / "link").read_bytes() == b"abc"
    os.link(root / "hello", root / "hard")
    assert os.stat(root / "hello").st_nlink == 2
    os.mkdir(root / "sub")
    (root / "sub" / "f").write_bytes(b"")
    with pytest.raises(OSError) as failure:
        os.rmdir(root / "sub")
    assert failure.value.errno == errno.ENOTEMPTY
    os.unlink(root / "sub" / "f")
    os.rmdir(root / "sub")
    os.setxattr(root / "hello", "user.k", b"value")
    assert os.getxattr(root / "hello", "user.k") == b"value"
    assert "user.k" in os.listxattr(root / "hello")
    os.removexattr(root / "hello", "user.k")
    with pytest.raises(OSError) as failure:
        os.getxattr(root / "hello", "user.k")
    assert failure.value.errno == errno.ENODATA
    os.utime(root / "hello", ns=(1_000_000_123, 2_000_000_456))
    assert os.stat(root / "hello").st_mtime_ns == 2_000_000_456
    os.chmod(root / "hello", 0o600)
    assert os.stat(root / "hello").st_mode & 0o777 == 0o600
    with open(root / "hello", "r+b") as f:
        os.posix_fallocate(f.fileno(), 0, 8192)
        assert os.fstat(f.fileno()).st_size == 8192
        assert os.lseek(f.fileno(), 0, os.SEEK_HOLE) == 8192
        with open(root / "copy", "wb") as out:
            assert os.copy_file_range(f.fileno(), out.fileno(), 3, 0, 0) == 3
    assert (root / "copy").read_bytes() == b"abc"
    os.mkfifo(root / "fifo")
    assert os.statvfs(root).f_namemax == 255
    found = subprocess.run(["find", str(root)], capture_output=True, text=True, check=True)
    ours = ["hello", "link", "hard", "copy", "fifo"]
    assert len(found.stdout.splitlines()) == 1 + 3 + 300 + len(ours)  # root, dirs, files
    shown = subprocess.run(["cat", str(root / "d0002" / "f006")], capture_output=True, check=True)
    assert shown.stdout == b"x" * 6


@needs_root
@pytest.mark.parametrize("zero_open", [False, True], ids=["open", "zero-message-open"])
def test_root_mount_with_mount2_serves_real_syscalls(scratch, zero_open):
    mnt = scratch / "mnt"
    mnt.mkdir()
    args = ["--files", "300", *(["--zero-open"] if zero_open else [])]
    with memfs_mounted(mnt, *args, log=scratch / "log") as process:
        line = next(line for line in Path("/proc/self/mounts").read_text().splitlines()
                    if line.split()[1] == str(mnt))
        assert line.split()[:3] == ["memfs", str(mnt), "fuse.memfs"]
        assert "default_permissions" in line and "user_id=0" in line
        exercise(mnt)
        stop_daemon(process)
        assert process.returncode == 0, (scratch / "log").read_text()
        assert not is_mounted(mnt)  # SIGTERM: the daemon unmounted on its way out


USER_SCRIPT = r"""
import sys
from pathlib import Path
root = Path(sys.argv[1])
assert (root / "hello").read_bytes() == b"hello world\n"
(root / "mine").write_bytes(b"written by a user")
assert (root / "mine").read_bytes() == b"written by a user"
print(sorted(p.name for p in root.iterdir()))
"""


def _user_mountpoint(scratch: Path, user: str | None) -> Path:
    mnt = scratch / "mnt"
    mnt.mkdir()
    if user is not None:
        os.chmod(scratch, 0o755)
        entry = pwd.getpwnam(user)
        os.chown(mnt, entry.pw_uid, entry.pw_gid)
    return mnt


def _as_user(user: str | None, *command: str) -> subprocess.CompletedProcess:
    if user is not None:
        command = ("runuser", "-u", user, "--", *command)
    return subprocess.run(command, capture_output=True, text=True, timeout=60, cwd="/")


@needs_fusermount
def test_user_mount_with_fusermount3(scratch, unprivileged_user):
    user = unprivileged_user
    mnt = _user_mountpoint(scratch, user)
    log = scratch / "log"
    with memfs_mounted(mnt, user=user, log=log) as process:
        line = next(line for line in Path("/proc/self/mounts").read_text().splitlines()
                    if line.split()[1] == str(mnt))
        uid = pwd.getpwnam(user).pw_uid if user else os.getuid()
        assert f"user_id={uid}" in line and "fuse.memfs" in line
        done = _as_user(user, sys.executable, "-c", USER_SCRIPT, str(mnt))
        assert done.returncode == 0, done.stderr
        assert done.stdout.strip() == "['hello', 'mine']"
        os.kill(_daemon_pid(process), signal.SIGTERM)  # not runuser's: it would kill it
        assert process.wait(timeout=15) == 0, log.read_text()
        assert not is_mounted(mnt)  # the daemon ran fusermount3 -u


@needs_root
@needs_fusermount
def test_auto_unmount_clears_the_mount_of_a_killed_daemon(scratch):
    # As root: auto_unmount goes through fusermount3 too. For a normal user
    # fusermount3 before 3.17 cannot unmount without allow_other (it checks the
    # dead mount as root and gets EACCES: libfuse#586, #1491).
    mnt = scratch / "mnt"
    mnt.mkdir()
    with memfs_mounted(mnt, "-o", "auto_unmount", log=scratch / "log") as process:
        process.kill()
        deadline = time.monotonic() + 10
        while is_mounted(mnt) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not is_mounted(mnt), "fusermount3's watcher did not unmount"


def _daemon_pid(process: subprocess.Popen) -> int:
    """The memfs process itself (runuser runs it as a child)."""
    found = subprocess.run(["pgrep", "-f", "-P", str(process.pid), "tests.fuse.memfs"],
                           capture_output=True, text=True).stdout.split()
    return int(found[0]) if found else process.pid


def test_a_killed_daemon_leaves_a_mount_that_layerfs_umount_clears(scratch):
    if os.geteuid() != 0 and shutil.which("fusermount3") is None:
        pytest.skip("a normal user mounts through fusermount3, not installed")
    mnt = scratch / "mnt"
    mnt.mkdir()
    with memfs_mounted(mnt, log=scratch / "log") as process:
        process.kill()
        process.wait()
        with pytest.raises(OSError) as failure:
            os.statvfs(mnt)  # statfs always asks the daemon; stat may be answered from cache
        assert failure.value.errno == errno.ENOTCONN
        cleared = subprocess.run([sys.executable, "-m", "layerfs", "umount", str(mnt)],
                                 env=layerfs_env(), capture_output=True, text=True, timeout=60)
        assert cleared.returncode == 0, cleared.stderr
        assert not is_mounted(mnt)


def _requests(log: Path) -> list[str]:
    """The opcodes the daemon logged so far (one DEBUG line per request), once
    the log has stopped growing (the daemon logs right after replying)."""
    deadline = time.monotonic() + 10
    size = -1
    while size != log.stat().st_size and time.monotonic() < deadline:
        size = log.stat().st_size
        time.sleep(0.3)
    return [line.split()[2] for line in log.read_text().splitlines()
            if line.startswith("layerfs.fuse DEBUG:") and "unique=" in line]


@needs_root
def test_a_warm_find_over_zero_message_opens_sends_no_directory_requests(scratch):
    mnt = scratch / "mnt"
    mnt.mkdir()
    log = scratch / "log"
    directory_requests = {"OPENDIR", "READDIR", "READDIRPLUS", "LOOKUP", "GETATTR"}
    with memfs_mounted(mnt, "--zero-open", "--debug", "--files", "1000", "-o", "ro", log=log):
        find = ["find", str(mnt), "-printf", "%s %p\n"]
        cold = subprocess.run(find, capture_output=True, check=True).stdout
        first = _requests(log)
        assert "READDIRPLUS" in first and first.count("OPENDIR") == 1  # answered ENOSYS, once
        # Other tests on this machine drop the kernel's caches now and then
        # (drop_caches, proactive reclaim): a walk they spoiled is walked again.
        for _ in range(3):
            before = len(_requests(log))
            warm = subprocess.run(find, capture_output=True, check=True).stdout
            second = _requests(log)[before:]
            if not directory_requests & set(second):
                break
    assert warm == cold and len(cold.splitlines()) == 1 + 10 + 1000 + 1
    assert "OPENDIR" not in second  # never again after the first ENOSYS
    assert not directory_requests & set(second), second


def test_mount_errors_are_one_clear_exception(scratch):
    engine = NativeEngine()
    with pytest.raises(MountError, match="does not exist"):
        engine.mount(MemFS(), str(scratch / "missing"), set())
    with pytest.raises(MountError, match="-o bogus: unknown FUSE mount option"):
        engine.mount(MemFS(), str(scratch), {"bogus"})
    with pytest.raises(MountError, match="unknown FUSE mount option"):
        mounting.parse_options({"ro=1"})


def test_options_become_flags_data_source_and_type():
    assert mounting.parse_options({"allow_root"}).allow_other  # the kernel knows only that
    parsed = mounting.parse_options({"ro", "default_permissions", "allow_other", "fsname=img",
                                     "subtype=layerfs", "noatime", "dev", "max_read=131072"})
    assert parsed.flags == 1 | 2 | 1024  # ro, nosuid (default), noatime; dev lifts nodev
    assert parsed.data == ["allow_other", "default_permissions", "max_read=131072"]
    assert (parsed.fsname, parsed.subtype, parsed.allow_other) == ("img", "layerfs", True)
    assert mounting._fusermount_options(parsed) == (
        "ro,nosuid,noatime,allow_other,default_permissions,max_read=131072,fsname=img,"
        "subtype=layerfs")


@needs_root
def test_passthrough_reads_go_to_the_backing_file_without_the_daemon(scratch):
    backing = scratch / "data"
    backing.write_bytes(os.urandom(3 << 20))
    mnt = scratch / "mnt"
    mnt.mkdir()
    log = scratch / "log"
    with memfs_mounted(mnt, "--backed", str(backing), "--passthrough", "--debug", log=log):
        assert (mnt / "backed").read_bytes() == backing.read_bytes()
        seen = _requests(log)
    if "passthrough on" not in log.read_text():
        pytest.skip("this kernel does not offer FUSE passthrough (6.9+, CONFIG_FUSE_PASSTHROUGH)")
    assert "OPEN" in seen and "RELEASE" in seen
    assert "READ" not in seen, "reads reached the daemon: not passed through"


@needs_root
def test_the_descriptor_survives_fork_and_an_external_umount_ends_the_daemon(scratch):
    """layerfs mounts, then daemonizes, then serves: the same order here."""
    mnt = scratch / "mnt"
    mnt.mkdir()
    started = subprocess.run([sys.executable, "-m", "tests.fuse.memfs", str(mnt), "--daemon"],
                             env=layerfs_env(), capture_output=True, text=True, timeout=60)
    assert started.returncode == 0, started.stderr
    child = int(started.stdout)
    try:
        assert is_mounted(mnt) and (mnt / "hello").read_bytes() == b"hello world\n"
        cleared = subprocess.run([sys.executable, "-m", "layerfs", "umount", str(mnt)],
                                 env=layerfs_env(), capture_output=True, text=True, timeout=60)
        assert cleared.returncode == 0, cleared.stderr
        deadline = time.monotonic() + 10
        while Path(f"/proc/{child}").exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not Path(f"/proc/{child}").exists(), "the daemon outlived its mount"
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.kill(child, signal.SIGKILL)
        force_unmount(mnt)


USERNS_SCRIPT = """
set -e
python=$1 mnt=$2
"$python" -m tests.fuse.memfs "$mnt" --daemon > /dev/null
cat "$mnt/hello"
umount "$mnt"
"""


def test_root_of_a_user_namespace_mounts_with_mount2(scratch, unprivileged_user):
    """euid 0 in a user namespace: mount(2) of FUSE is allowed there (FS_USERNS_MOUNT)."""
    user = unprivileged_user
    if shutil.which("unshare") is None:
        pytest.skip("unshare is not installed")
    mnt = _user_mountpoint(scratch, user)
    command = ["env", f"PYTHONPATH={REPO_ROOT}", "unshare", "-Urm", "sh", "-c", USERNS_SCRIPT,
               "sh", sys.executable, str(mnt)]
    probe = _as_user(user, "unshare", "-Urm", "true")
    if probe.returncode != 0:
        pytest.skip(f"no user namespaces for a normal user here: {probe.stderr.strip()}")
    done = _as_user(user, *command)
    assert done.returncode == 0, done.stderr
    assert done.stdout == "hello world\n"
    assert not is_mounted(mnt)  # the namespace's mount never showed here
