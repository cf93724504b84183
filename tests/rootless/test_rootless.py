"""Rootless exploration as a real normal user: --as-me, and layerfs run/shell/unshare in a
user namespace (with and without subordinate ids), writes through an upper there,
and nothing left mounted outside the namespace, also when killed."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.rootless.support import (
    IMAGE_FILES,
    User,
    build_image,
    layer_members,
    make_user,
    needs_tools,
    subordinate_ids,
)
from tests.support.mounting import layerfs_mounted

# Walks the current directory: owner, mode and content (or errno) of every entry, and
# where it ran and as whom.
WALK = r"""
import json, os, stat, sys
root = sys.argv[1] if len(sys.argv) > 1 else "."
tree, closed = {}, {}
def unreadable(exc):
    closed[os.path.relpath(exc.filename, root)] = exc.errno
for top, dirs, files in os.walk(root, onerror=unreadable):
    for name in dirs + files:
        path = os.path.join(top, name)
        st = os.lstat(path)
        entry = {"uid": st.st_uid, "gid": st.st_gid, "mode": st.st_mode}
        if stat.S_ISREG(st.st_mode):
            try:
                with open(path, "rb") as file:
                    entry["data"] = file.read().decode()
            except OSError as exc:
                entry["errno"] = exc.errno
        tree[os.path.relpath(path, root)] = entry
print(json.dumps({"cwd": os.getcwd(), "uid": os.getuid(), "tree": tree, "closed": closed}))
"""


@pytest.fixture
def user(scratch, unprivileged_user) -> User:
    if os.geteuid() == 0 and unprivileged_user is None:
        pytest.skip("no unprivileged user")
    return make_user(scratch, unprivileged_user)


@pytest.fixture
def image(scratch) -> str:
    layout = scratch / "layout"
    build_image(layout)
    for path in [layout, *layout.rglob("*")]:
        os.chmod(path, 0o755 if path.is_dir() else 0o644)
    return f"{layout}:img"


def _walked(result: subprocess.CompletedProcess) -> dict:
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.strip().splitlines()[-1])


def _host_mounts() -> str:
    return Path("/proc/self/mountinfo").read_text()


def _assert_every_file_readable(tree: dict) -> None:
    for path, (_, _, mode, data) in IMAGE_FILES.items():
        assert path in tree, path
        assert tree[path]["mode"] & 0o7777 == mode, path
        if data is not None:
            assert tree[path].get("data") == data.decode(), (path, tree[path])


# -- --as-me --------------------------------------------------------------------------

def test_as_me_shows_every_entry_as_the_users_and_reads_every_file(user, image):
    mnt = user.work / "mnt"
    mnt.mkdir()
    os.chown(mnt, user.uid, user.gid)
    cache = ("--cache-dir", str(user.home / "cache"))
    with layerfs_mounted(mnt, *cache, image, user=user.name, check_lowers=False):
        plain = _walked(user.run(sys.executable, "-c", WALK, str(mnt)))
    # Without it the image's owners hold: root's 0600 file and 0700 dir are closed.
    assert plain["tree"]["etc/keep.txt"]["errno"] == 13, plain
    assert plain["closed"] == {"secret": 13, "home/u": 13}, plain
    assert plain["tree"]["home/u"]["uid"] == 1000

    with layerfs_mounted(mnt, "--as-me", *cache, image, user=user.name, check_lowers=False):
        shown = _walked(user.run(sys.executable, "-c", WALK, str(mnt)))
        owner = user.run("getfattr", "--only-values", "-n", "user.layerfs.owner",
                         str(mnt / "home/u/private"))
    _assert_every_file_readable(shown["tree"])
    assert {(e["uid"], e["gid"]) for e in shown["tree"].values()} == {(user.uid, user.gid)}
    # The real owner stays visible.
    assert (owner.returncode, owner.stdout) == (0, "1000:1000"), owner.stderr
    which = user.layerfs("which", image, "/home/u/private", *cache)
    assert which.returncode == 0 and "1000:1000" in which.stdout, which


# -- layerfs run ------------------------------------------------------------------------

def test_run_with_subordinate_ids_shows_the_images_owners(user, image):
    needs_tools("newuidmap")
    with subordinate_ids(user, True):
        result = user.layerfs("run", image, "--", sys.executable, "-c", WALK)
    seen = _walked(result)
    assert seen["uid"] == 0
    _assert_every_file_readable(seen["tree"])
    for path, (uid, gid, _, _) in IMAGE_FILES.items():
        assert (seen["tree"][path]["uid"], seen["tree"][path]["gid"]) == (uid, gid), path
    assert "subordinate" not in result.stderr
    # The mount existed in the namespace only, and its mountpoint is gone.
    assert seen["cwd"].startswith("/") and f" {seen['cwd']} " not in _host_mounts()
    assert not os.path.exists(seen["cwd"])


def test_run_without_subordinate_ids_maps_the_user_alone_and_says_so(user, image):
    upper = user.work / "upper"
    user.run("mkdir", str(upper))
    with subordinate_ids(user, False):
        result = user.layerfs("run", image, "--", sys.executable, "-c", WALK)
        squashed = user.layerfs("run", "-o", "squash_to_root", image, "--",
                                sys.executable, "-c", WALK)
        # uid 1000 cannot be given to a copy-up here: it stays the user's own.
        written = user.layerfs("run", "-o", "squash_to_root", image, "--upper", str(upper),
                               "--", "sh", "-c", "echo more >> home/u/private")
    assert written.returncode == 0, written.stderr
    copied = os.lstat(upper / "home/u/private")
    assert (copied.st_uid, copied.st_gid) == (user.uid, user.gid)
    assert (upper / "home/u/private").read_bytes() == b"uid 1000's\nmore\n"
    seen = _walked(result)
    assert "no subordinate ids" in result.stderr and "65534" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    tree = seen["tree"]
    # Root's files are the user's own, so root in the namespace reads them...
    for path in ("etc/keep.txt", "secret/key", "bin/su"):
        assert tree[path]["data"] == IMAGE_FILES[path][3].decode()
        assert (tree[path]["uid"], tree[path]["gid"]) == (0, 0)
    # ...and uid 1000 is not mapped: the overflow id, its 0700 dir closed.
    assert (tree["home/u"]["uid"], tree["home/u"]["gid"]) == (65534, 65534)
    assert "home/u/private" not in tree
    # squash_to_root opens it.
    _assert_every_file_readable(_walked(squashed)["tree"])


def test_run_chroot_runs_the_images_programs_inside_it(user, scratch, image):
    if not (scratch / "layout").exists() or "tools" not in (scratch / "layout/index.json"
                                                            ).read_text():
        pytest.skip("no host binaries to put in the image")
    tools = image.replace(":img", ":tools")
    result = user.layerfs("run", "--chroot", tools, "--", "/bin/sh", "-c",
                          "cat /etc/keep.txt; /usr/bin/stat -c %u:%g:%a /home/u /bin/su; "
                          "pwd")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == "root only"
    assert lines[-1] == "/"
    owners = lines[1:3]
    if "subordinate" not in result.stderr:
        assert owners == ["1000:1000:700", "0:0:4755"]


def test_run_with_an_upper_writes_deletes_renames_then_remounts_and_commits(user, scratch,
                                                                             image):
    needs_tools("newuidmap")
    upper = user.work / "upper"
    changes = (
        "set -e; echo new > etc/new.txt; echo more >> home/u/private; rm gone.txt; "
        "rm -r secret; mv data moved; chown 1000:1000 etc/new.txt; "
        f"{sys.executable} -c \"import os; os.mkdir('d'); os.rename('d', 'd2')\"")
    with subordinate_ids(user, True):
        user.run("mkdir", str(upper))
        first = user.layerfs("run", image, "--upper", str(upper), "--", "sh", "-c", changes)
        assert first.returncode == 0, first.stderr
        again = _walked(user.layerfs("run", image, "--upper", str(upper), "--",
                                     sys.executable, "-c", WALK))
        layer = user.work / "layer.tar"
        commit = user.layerfs("unshare", "--", sys.executable, "-m", "layerfs", "commit",
                              str(upper), "-o", str(layer))
        assert commit.returncode == 0, commit.stderr
    tree = again["tree"]
    assert tree["etc/new.txt"] == {"uid": 1000, "gid": 1000, "mode": 0o100644,
                                   "data": "new\n"}
    assert tree["home/u/private"]["data"] == "uid 1000's\nmore\n"
    assert tree["home/u/private"]["uid"] == 1000
    assert tree["moved/sub/file"]["data"] == "to be moved\n"
    assert not {"gone.txt", "secret", "secret/key", "data", "d"} & tree.keys()
    assert "d2" in tree
    # The kernel's userxattr format: user.overlay.* only, whiteouts as 0/0 devices.
    for path in [upper, *upper.rglob("*")]:
        names = os.listxattr(path, follow_symlinks=False) if not path.is_symlink() else []
        assert not [n for n in names if n.startswith("trusted.")], path
    assert os.lstat(upper / "gone.txt").st_rdev == 0
    members = layer_members(layer)
    assert {".wh.gone.txt", ".wh.secret", ".wh.data", "moved/sub/file", "etc/new.txt"} \
        <= members.keys()
    assert (members["etc/new.txt"].uid, members["home/u/private"].uid) == (1000, 1000)
    assert members["etc"].uid == 0


def test_nothing_stays_mounted_when_run_is_killed(user, image):
    process = user.popen_layerfs("run", image, "--", "sleep", "300")
    try:
        top = _layerfs_process(process)
        sleeper, mountpoint = _wait_for_sleeper(top)
        assert f" {mountpoint} " not in _host_mounts()
        family = _descendants(top)
        os.kill(top, signal.SIGKILL)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and any(_alive(pid) for pid in family):
            time.sleep(0.05)
        assert not [pid for pid in family if _alive(pid)], "processes left behind"
        assert f" {mountpoint} " not in _host_mounts()
        # Only the empty mountpoint is left by a SIGKILL: nothing is mounted on it.
        assert os.listdir(mountpoint) == []
        os.rmdir(mountpoint)
    finally:
        if process.poll() is None:
            process.kill()
        process.communicate(timeout=30)


def test_sigterm_ends_the_namespace_and_removes_the_mountpoint(user, image):
    process = user.popen_layerfs("run", image, "--", "sleep", "300")
    try:
        top = _layerfs_process(process)
        _, mountpoint = _wait_for_sleeper(top)
        os.kill(top, signal.SIGTERM)
        _, stderr = process.communicate(timeout=30)
        assert process.returncode == 128 + signal.SIGKILL, stderr
        assert not os.path.exists(mountpoint)
        assert f" {mountpoint} " not in _host_mounts()
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate(timeout=30)


def _layerfs_process(process: subprocess.Popen) -> int:
    """The user's layerfs process (runuser's child when the tests run as root)."""
    if os.geteuid() != 0:
        return process.pid
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        children = _children(process.pid)
        if children:
            return children[0]
        assert process.poll() is None, process.communicate()
        time.sleep(0.02)
    raise TimeoutError("layerfs did not start")


def _children(pid: int) -> list[int]:
    try:
        text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    except OSError:
        return []
    return [int(child) for child in text.split()]


def _descendants(pid: int) -> list[int]:
    found, pending = [], [pid]
    while pending:
        current = pending.pop()
        found.append(current)
        pending.extend(_children(current))
    return found


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def _wait_for_sleeper(top: int) -> tuple[int, str]:
    """The command's pid, once it runs in the mount, and the mountpoint."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        for pid in _descendants(top):
            try:
                if Path(f"/proc/{pid}/comm").read_text().strip() != "sleep":
                    continue
                cwd = os.readlink(f"/proc/{pid}/cwd")
                mounts = Path(f"/proc/{pid}/mountinfo").read_text()
            except OSError:
                continue
            if f" {cwd} " in mounts and "fuse.layerfs" in mounts:
                return pid, cwd
        time.sleep(0.05)
    raise TimeoutError("the command did not start in the mount")


# -- errors a normal user meets ------------------------------------------------------------

def test_allow_other_without_user_allow_other_is_one_line(user, image):
    from layerfs.fusecheck import user_allow_other
    if user_allow_other():
        pytest.skip("/etc/fuse.conf has user_allow_other here")
    mnt = user.work / "mnt"
    user.run("mkdir", str(mnt))
    result = user.layerfs("mount", "-o", "allow_other", image, str(mnt),
                          "--cache-dir", str(user.home / "cache"))
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [
        "layerfs: -o allow_other: /etc/fuse.conf does not have user_allow_other; add that "
        "line to it (as root) or mount without allow_other"]


CHECK = r"""
import sys
from layerfs import fusecheck
from layerfs.errors import MountError
fusecheck.FUSE_DEVICE = sys.argv[1]
try:
    fusecheck.check_fuse()
except MountError as exc:
    print(exc)
"""


def test_fuse_device_and_fusermount_problems_are_one_line(user, scratch):
    device = scratch / "fuse"
    device.write_bytes(b"")
    os.chmod(device, 0o600)  # root's (or, not as root, unreadable by mode 0)
    if os.geteuid() != 0:
        os.chmod(device, 0)
    result = user.run(sys.executable, "-c", CHECK, str(device))
    assert result.stdout.startswith(f"{device}: not readable and writable by you"), result
    assert "chmod 0666" in result.stdout

    fake = user.work / "bin"
    fake.mkdir()
    (fake / "fusermount3").write_text("#!/bin/sh\n")
    os.chmod(fake / "fusermount3", 0o755)
    os.chmod(device, 0o666)
    env_path = f"PATH={fake}"
    result = subprocess.run(user.command("env", env_path, sys.executable, "-c", CHECK,
                                         str(device)), capture_output=True, text=True)
    assert result.stdout.startswith(f"{fake}/fusermount3: not setuid root"), result
    empty = user.work / "empty"
    empty.mkdir()
    result = subprocess.run(user.command("env", f"PATH={empty}", sys.executable, "-c", CHECK,
                                         str(device)), capture_output=True, text=True)
    assert result.stdout.startswith("fusermount3: not found"), result


def test_as_me_with_an_upper_records_the_user_as_owner(user, image):
    mnt, upper = user.work / "mnt", user.work / "upper"
    for path in (mnt, upper):
        user.run("mkdir", str(path))
    script = (f"set -e; cd {mnt}; echo more >> etc/keep.txt; echo new > etc/new; "
              f"chown {user.uid}:{user.gid} etc/new; rm secret/key; "
              "stat -c %u:%g etc/keep.txt etc/new; "
              "getfattr --only-values -n user.layerfs.owner etc/keep.txt")
    with layerfs_mounted(mnt, "--as-me", "--upper", str(upper), "--cache-dir",
                         str(user.home / "cache"), image, user=user.name, check_lowers=False):
        result = user.run("sh", "-c", script)
    assert result.returncode == 0, result.stderr
    mine = f"{user.uid}:{user.gid}"
    # What stat shows, what the kernel checked and what the upper records agree: the user.
    assert result.stdout.splitlines() == [mine, mine, mine]
    for name in ("etc/keep.txt", "etc/new", "etc"):
        st = os.lstat(upper / name)
        assert (st.st_uid, st.st_gid) == (user.uid, user.gid), name
    assert (upper / "etc/keep.txt").read_bytes() == b"root only\nmore\n"
    assert os.lstat(upper / "secret/key").st_rdev == 0


def test_shell_runs_the_users_shell_in_the_mount(user, image):
    process = subprocess.run(
        user.command("env", "SHELL=/bin/sh", sys.executable, "-m", "layerfs", "shell", image),
        input="id -u; cat etc/keep.txt; pwd\n", capture_output=True, text=True, timeout=120)
    assert process.returncode == 0, process.stderr
    uid, content, cwd = process.stdout.splitlines()
    assert (uid, content) == ("0", "root only")
    assert f" {cwd} " not in _host_mounts() and not os.path.exists(cwd)


def test_shell_on_a_terminal_gives_ctrl_c_to_the_command_alone(user, image):
    import pty
    import select
    import shutil
    if shutil.which("bash") is None:
        pytest.skip("no bash")
    command = user.command("env", "SHELL=/bin/bash", "TERM=dumb", sys.executable, "-m",
                           "layerfs", "shell", image)
    pid, terminal = pty.fork()
    if pid == 0:
        os.execvp(command[0], command)
    seen = bytearray()

    def expect(pattern: bytes, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while pattern not in seen:
            assert time.monotonic() < deadline, f"no {pattern!r} in {bytes(seen)!r}"
            if select.select([terminal], [], [], 0.1)[0]:
                try:
                    seen.extend(os.read(terminal, 4096))
                except OSError:
                    break
        del seen[:seen.index(pattern) + len(pattern)]

    try:
        expect(b"# ")  # root's prompt
        os.write(terminal, b"sleep 60; echo slept\n")
        time.sleep(0.5)
        os.write(terminal, b"\x03")  # ^C: the sleep stops, the session goes on
        expect(b"# ")
        os.write(terminal, b"echo alive $((40+2)); cat etc/keep.txt; exit 3\n")
        expect(b"alive 42")
        expect(b"root only")
        _, status = os.waitpid(pid, 0)
        pid = 0
        assert os.waitstatus_to_exitcode(status) == 3
    finally:
        if pid:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
        os.close(terminal)
