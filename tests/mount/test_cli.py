"""`layerfs mount` / `layerfs umount` as a user runs them: daemon, errors, read-only, stability."""

from __future__ import annotations

import errno
import os
import pwd
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest

from layerfs import treediff
from tests.support.layerspec import Dir, File, Symlink, Whiteout, materialize_stack
from tests.support.mounting import (
    force_unmount,
    is_mounted,
    layerfs_command,
    layerfs_env,
    layerfs_mounted,
    run_layerfs,
)

STACK = [
    {b"etc/passwd": File(b"root"), b"etc/hosts": File(b"hosts"), b"bin/sh": File(b"sh", 0o755),
     b"lib/link": Symlink(b"../bin/sh"), b"big": File(os.urandom(3 << 20))},
    {b"etc/hosts": Whiteout(), b"opt": Dir(opaque=True), b"opt/app": File(b"app")},
]


@pytest.fixture
def image(scratch: Path) -> Path:
    """An extracted-layers image dir with a `layers` order file."""
    materialize_stack(STACK, scratch, "oci")
    (scratch / "oci" / "layers").write_text("# bottom first\n0\n\n1\n")
    return scratch / "oci"


@pytest.fixture
def mountpoint(scratch: Path):
    path = scratch / "mnt"
    path.mkdir()
    yield path
    force_unmount(path)


def daemon_pids(mountpoint: Path) -> list[int]:
    """The layerfs processes serving ``mountpoint`` (not counting a child the
    daemon is just starting, which shows its command line until it execs)."""
    parents = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                cmdline = Path(f"/proc/{entry}/cmdline").read_bytes()
                status = Path(f"/proc/{entry}/status").read_text()
            except OSError:
                continue
            if b"layerfs" in cmdline and os.fsencode(mountpoint) in cmdline.split(b"\0"):
                ppid = next(line.split()[1] for line in status.splitlines()
                            if line.startswith("PPid:"))
                parents[int(entry)] = int(ppid)
    return [pid for pid, ppid in parents.items() if ppid not in parents]


def wait_until(predicate, timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return predicate()


def test_background_mount_is_live_on_return_and_umount_stops_the_daemon(image, mountpoint):
    result = run_layerfs("mount", str(image), str(mountpoint))
    try:
        assert result.returncode == 0, result.stderr
        assert is_mounted(mountpoint)
        assert (mountpoint / "etc" / "passwd").read_bytes() == b"root"
        assert sorted(os.listdir(mountpoint / "etc")) == ["passwd"]
        pids = daemon_pids(mountpoint)
        assert len(pids) == 1
    finally:
        result = run_layerfs("umount", str(mountpoint))
    assert result.returncode == 0, result.stderr
    assert not is_mounted(mountpoint)
    assert wait_until(lambda: not daemon_pids(mountpoint)), "daemon still running after umount"


def test_sigterm_unmounts_cleanly(image, mountpoint):
    with layerfs_mounted(mountpoint, str(image)) as process:
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=10) == 0
        assert not is_mounted(mountpoint)


def test_layer_options_and_kernel_lowerdir_spelling_give_the_same_tree(image, scratch):
    trees = []
    for n, args in enumerate([[str(image)],
                              ["--layer", str(image / "0"), "--layer", str(image / "1")],
                              ["-o", f"ro,nodev,lowerdir={image / '1'}:{image / '0'}"]]):
        mnt = scratch / f"m{n}"
        mnt.mkdir()
        with layerfs_mounted(mnt, *args):
            trees.append(treediff.snapshot(mnt))
    assert trees[0] == trees[1] == trees[2]
    assert set(trees[0]) >= {b"etc/passwd", b"opt/app", b"lib/link", b"big"}
    assert b"etc/hosts" not in trees[0]


def test_reads_big_files_at_any_offset(image, mountpoint):
    expected = STACK[0][b"big"].content
    with layerfs_mounted(mountpoint, str(image)):
        with open(mountpoint / "big", "rb") as f:
            assert f.read() == expected
            f.seek(1_000_001)
            assert f.read(70_000) == expected[1_000_001:1_070_001]


@pytest.mark.parametrize("operation", [
    lambda m: (m / "new").write_text("x"),
    lambda m: open(m / "etc" / "passwd", "r+b"),
    lambda m: os.truncate(m / "etc" / "passwd", 0),
    lambda m: (m / "newdir").mkdir(),
    lambda m: (m / "etc" / "passwd").unlink(),
    lambda m: os.rmdir(m / "opt"),
    lambda m: os.rename(m / "etc" / "passwd", m / "etc" / "moved"),
    lambda m: os.chmod(m / "etc" / "passwd", 0o600),
    lambda m: os.utime(m / "etc" / "passwd", (0, 0)),
    lambda m: os.symlink("x", m / "sym"),
    lambda m: os.link(m / "etc" / "passwd", m / "hard"),
    lambda m: os.setxattr(m / "etc" / "passwd", "user.x", b"1"),
    lambda m: os.mkfifo(m / "fifo"),
], ids=["create", "open-rw", "truncate", "mkdir", "unlink", "rmdir", "rename", "chmod",
        "utime", "symlink", "link", "setxattr", "mkfifo"])
def test_every_write_fails_with_erofs(image, mountpoint, operation):
    with layerfs_mounted(mountpoint, str(image)):
        with pytest.raises(OSError) as raised:
            operation(mountpoint)
        assert raised.value.errno == errno.EROFS


def test_lower_layers_are_never_written(image, mountpoint):
    before = {layer: treediff.snapshot(image / layer) for layer in ("0", "1")}
    atimes = {p: os.lstat(p).st_atime_ns for p in (image / "0" / "big", image / "0" / "etc" / "passwd")}
    with layerfs_mounted(mountpoint, str(image)):
        treediff.snapshot(mountpoint)  # reads every file
    assert {layer: treediff.snapshot(image / layer) for layer in ("0", "1")} == before
    assert {p: os.lstat(p).st_atime_ns for p in atimes} == atimes


def test_inode_numbers_are_stable_across_remounts_and_match_readdir(image, mountpoint):
    def inodes() -> dict[str, tuple[int, int]]:
        found = {}
        for dirpath, _, _ in os.walk(mountpoint):
            with os.scandir(dirpath) as it:
                for entry in it:
                    found[entry.path] = (entry.inode(), os.lstat(entry.path).st_ino)
        return found

    with layerfs_mounted(mountpoint, str(image)):
        first = inodes()
    with layerfs_mounted(mountpoint, str(image)):
        second = inodes()
    assert first == second
    assert all(from_readdir == from_stat for from_readdir, from_stat in first.values())
    assert len({ino for ino, _ in first.values()}) == len(first)


def test_large_directory_lists_every_name_once(scratch, mountpoint):
    names = {f"file-{n:05d}".encode(): File(b"") for n in range(3000)}
    lower = {b"d/" + name: item for name, item in names.items()}
    upper = {b"d/" + name: Whiteout() for name in list(names)[::3]}
    upper.update({b"d/extra-" + str(n).encode(): File(b"") for n in range(500)})
    layers = materialize_stack([lower, upper], scratch, "oci")
    with layerfs_mounted(mountpoint, "--layer", str(layers[0]), "--layer", str(layers[1])):
        listed = os.listdir(mountpoint / "d")
        dot = subprocess.run(["ls", "-a", str(mountpoint / "d")], capture_output=True,
                             text=True, check=True).stdout.split()
    assert len(listed) == len(set(listed)) == 3000 - 1000 + 500
    assert dot[:2] == [".", ".."]


def test_statfs_comes_from_the_top_layer(image, mountpoint):
    with layerfs_mounted(mountpoint, str(image)):
        seen = os.statvfs(mountpoint)
    top = os.statvfs(image / "1")
    assert (seen.f_bsize, seen.f_blocks, seen.f_namemax) == (top.f_bsize, top.f_blocks,
                                                             top.f_namemax)


def test_override_stat_xattr_is_honoured(scratch, mountpoint, needs_root):
    layer = scratch / "cs"
    (layer / "bin").mkdir(parents=True)
    (layer / "bin" / "su").write_bytes(b"su")
    (layer / "dev").mkdir()
    (layer / "dev" / "null").write_bytes(b"")
    os.setxattr(layer, "user.containers.override_stat", b"0:0:0755")
    os.setxattr(layer / "bin" / "su", "user.containers.override_stat", b"0:0:4755")
    os.setxattr(layer / "dev" / "null", "user.containers.override_stat", b"0:0:0666:char-1-3")
    os.chown(layer / "bin" / "su", 1000, 1000)
    with layerfs_mounted(mountpoint, "--layer", str(layer)):
        su, null = os.lstat(mountpoint / "bin" / "su"), os.lstat(mountpoint / "dev" / "null")
        xattrs = os.listxattr(mountpoint / "bin" / "su")
    assert (su.st_uid, su.st_gid, oct(su.st_mode)) == (0, 0, oct(0o104755))
    assert oct(null.st_mode) == oct(0o020666) and null.st_rdev == os.makedev(1, 3)
    assert "user.containers.override_stat" not in xattrs


@pytest.mark.parametrize("case", ["missing-image", "missing-layer", "layer-is-file",
                                  "missing-mountpoint", "mountpoint-is-file", "busy",
                                  "bad-option", "bad-order-file"])
def test_mount_failures_are_one_clear_line(image, mountpoint, scratch, case):
    args = {
        "missing-image": [str(scratch / "nope"), str(mountpoint)],
        "missing-layer": ["--layer", str(scratch / "nope"), str(mountpoint)],
        "layer-is-file": ["--layer", str(image / "layers"), str(mountpoint)],
        "missing-mountpoint": [str(image), str(scratch / "nope")],
        "mountpoint-is-file": [str(image), str(image / "layers")],
        "busy": [str(image), str(mountpoint)],
        "bad-option": ["-o", "lowerdir=/a::/b", str(mountpoint)],
        "bad-order-file": [str(image), str(mountpoint)],
    }[case]
    if case == "bad-order-file":
        (image / "layers").write_text("0\n../escape\n")
    if case == "busy":
        with layerfs_mounted(mountpoint, str(image)):
            result = run_layerfs("mount", *args)
    else:
        result = run_layerfs("mount", *args)
    assert result.returncode != 0
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "Traceback" not in result.stderr
    named = {"missing-image": "nope", "missing-layer": "nope", "layer-is-file": "layers",
             "missing-mountpoint": "nope", "mountpoint-is-file": "layers", "busy": "busy",
             "bad-option": "lowerdir", "bad-order-file": "../escape"}[case]
    assert named in lines[0]
    if case != "busy":
        assert not is_mounted(mountpoint)


def test_mount_over_a_stale_mount_after_kill_9(image, mountpoint):
    with layerfs_mounted(mountpoint, str(image)) as process:
        process.kill()
        process.wait(timeout=10)
        result = run_layerfs("mount", str(image), str(mountpoint))
        assert result.returncode == 0, result.stderr
        try:
            assert (mountpoint / "etc" / "passwd").read_bytes() == b"root"
        finally:
            run_layerfs("umount", str(mountpoint))


def test_umount_of_a_stale_mount_after_kill_9(image, mountpoint):
    with layerfs_mounted(mountpoint, str(image)) as process:
        process.kill()
        process.wait(timeout=10)
        with pytest.raises(OSError) as raised:
            os.stat(mountpoint / "etc")
        assert raised.value.errno == errno.ENOTCONN
        result = run_layerfs("umount", str(mountpoint))
        assert result.returncode == 0, result.stderr
        assert not is_mounted(mountpoint)


def test_mount_as_an_unprivileged_user(image, scratch, unprivileged_user):
    if shutil.which("fusermount3") is None:
        pytest.skip("fusermount3 is not installed")
    mountpoint = scratch / "user-mnt"
    mountpoint.mkdir()
    if unprivileged_user is not None:
        for path in [scratch, *scratch.rglob("*")]:
            if not path.is_symlink():
                os.chmod(path, os.lstat(path).st_mode | 0o005 | (0o010 if path.is_dir() else 0))
        os.chown(mountpoint, pwd.getpwnam(unprivileged_user).pw_uid, -1)
    with layerfs_mounted(mountpoint, str(image), user=unprivileged_user):
        with open("/proc/self/mounts") as mounts:
            line = next(m for m in mounts if f" {mountpoint} " in m)
        assert "fuse.layerfs" in line
        assert "user_id=0," not in line or unprivileged_user is None
        # Without allow_other only the mounting user may look inside, not even root.
        as_user = ["runuser", "-u", unprivileged_user, "--"] if unprivileged_user else []
        shown = subprocess.run([*as_user, "cat", str(mountpoint / "opt" / "app")],
                               capture_output=True, check=True).stdout
        assert shown == b"app"
        listed = subprocess.run([*as_user, "ls", str(mountpoint / "etc")], capture_output=True,
                                text=True, check=True).stdout.split()
        assert listed == ["passwd"]


def test_a_backing_file_that_vanishes_fails_that_request_only(image, mountpoint, scratch):
    victim = image / "1" / "opt" / "app"
    with layerfs_mounted(mountpoint, str(image), check_lowers=False) as process:
        os.stat(mountpoint / "opt" / "app")  # the index knows it now
        victim.unlink()
        with pytest.raises(OSError) as raised:
            (mountpoint / "opt" / "app").read_bytes()
        assert raised.value.errno == errno.EIO
        assert process.poll() is None, "the daemon died"
        assert (mountpoint / "etc" / "passwd").read_bytes() == b"root"


def test_debug_logs_each_request(image, mountpoint, scratch):
    log = scratch / "debug.log"
    with layerfs_mounted(mountpoint, "--debug", "--log", str(log), str(image)):
        (mountpoint / "etc" / "passwd").read_bytes()
    text = log.read_text()
    assert "lookup" in text and "open" in text and "read" in text


def test_a_layer_dir_swapped_for_a_symlink_is_never_followed(image, mountpoint):
    """The daemon resolves backing paths beneath the layer root without following
    symlinks: a layer whose `etc` becomes `etc -> /` must not expose the host's /etc."""
    layer_etc = image / "0" / "etc"
    with layerfs_mounted(mountpoint, str(image), check_lowers=False) as process:
        # Looked up, never opened: a descriptor opened before the swap would still
        # read the layer's own file (as it should), not show what the swap does.
        assert (mountpoint / "etc" / "passwd").stat().st_size == len(b"root")
        layer_etc.rename(image / "0" / "etc.real")
        layer_etc.symlink_to("/")
        # Drop the page cache of the file so the read reaches the daemon's open.
        subprocess.run(["sh", "-c", "echo 1 > /proc/sys/vm/drop_caches"], capture_output=True)
        with pytest.raises(OSError) as raised:
            with open(mountpoint / "etc" / "passwd", "rb") as f:
                f.read()
        assert raised.value.errno == errno.EIO
        assert process.poll() is None


def run_with_env(env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(layerfs_command(*args), env={**layerfs_env(), **env},
                          capture_output=True, text=True, timeout=120)


def test_an_unknown_engine_is_one_line_and_nothing_mounted(image, mountpoint):
    for args, env in ((["--engine", "bogus"], {}), (["-o", "engine=bogus"], {}),
                      ([], {"LAYERFS_ENGINE": "bogus"})):
        result = run_with_env(env, "mount", *args, str(image), str(mountpoint))
        assert result.returncode != 0, args
        assert "bogus" in result.stderr.strip().splitlines()[-1]  # argparse's usage first
        assert not is_mounted(mountpoint)


@pytest.mark.parametrize("how", ["--engine", "-o", "env"])
def test_the_pyfuse3_engine_is_chosen_by_option_or_environment(image, mountpoint, how):
    args = {"--engine": ["--engine", "pyfuse3"], "-o": ["-o", "engine=pyfuse3"], "env": []}[how]
    env = {"LAYERFS_ENGINE": "pyfuse3"} if how == "env" else {}
    log = mountpoint.parent / "engine.log"
    result = run_with_env(env, "mount", *args, "--log", str(log), str(image), str(mountpoint))
    assert result.returncode == 0, result.stderr
    try:
        assert (mountpoint / "opt" / "app").read_bytes() == b"app"
    finally:
        run_layerfs("umount", str(mountpoint), check=True)
    assert "(engine pyfuse3)" in log.read_text()


def test_background_mount_resolves_relative_paths_against_the_callers_cwd(scratch):
    """The daemon runs from /: every path typed relative to the caller's cwd (image, cache
    dir, upper and work dir, log, mountpoint) must mean the same in the daemon."""
    from tests.images.tarbuild import f, layer_tar, write_oci_layout

    write_oci_layout(scratch / "layout", {"v1": [layer_tar([f("etc/motd", b"hello\n")])]})
    (scratch / "mnt").mkdir()
    (scratch / "up").mkdir()
    (scratch / "wk").mkdir()
    result = run_layerfs("mount", "--log", "x.log", "--cache-dir", "cache", "--upper", "up",
                         "--work", "wk", "layout:v1", "mnt", cwd=scratch)
    try:
        assert result.returncode == 0, result.stderr
        assert (scratch / "mnt" / "etc" / "motd").read_bytes() == b"hello\n"
        (scratch / "mnt" / "new").write_bytes(b"written")
        assert (scratch / "up" / "new").read_bytes() == b"written"
        assert (scratch / "wk" / "work").is_dir()
        assert any((scratch / "cache").iterdir()), "the layer was not unpacked into ./cache"
        assert wait_until(lambda: (scratch / "x.log").exists()
                          and "serving" in (scratch / "x.log").read_text())
    finally:
        run_layerfs("umount", "mnt", cwd=scratch)
        force_unmount(scratch / "mnt")
    assert not is_mounted(scratch / "mnt")
    assert not os.path.exists("/x.log")


def test_relative_layer_options_in_the_background(image, scratch):
    (scratch / "mnt").mkdir()
    top, bottom = os.path.relpath(image / "1", scratch), os.path.relpath(image / "0", scratch)
    result = run_layerfs("mount", "-o", f"lowerdir={top}:{bottom}", "mnt", cwd=scratch)
    try:
        assert result.returncode == 0, result.stderr
        assert (scratch / "mnt" / "opt" / "app").read_bytes() == b"app"
    finally:
        force_unmount(scratch / "mnt")
    result = run_layerfs("mount", "--layer", bottom, "--layer", top, "mnt", cwd=scratch)
    try:
        assert result.returncode == 0, result.stderr
        assert sorted(os.listdir(scratch / "mnt" / "etc")) == ["passwd"]
    finally:
        force_unmount(scratch / "mnt")


@pytest.mark.parametrize("case", ["missing-upper", "missing-mountpoint", "given-work-dir"])
def test_a_failed_writable_mount_leaves_nothing_behind(image, scratch, case):
    """Only what the failed mount itself created goes: the default work dir beside the
    upper dir, or the work/ inside a work dir the user gave (which stays)."""
    upper, mountpoint, work = scratch / "up", scratch / "mnt", scratch / "wk"
    if case != "missing-upper":
        upper.mkdir()
    if case == "missing-upper":
        mountpoint.mkdir()
    args = ["--upper", str(upper)]
    if case == "given-work-dir":
        work.mkdir()
        args += ["--work", str(work)]
    args.append(str(image))
    before = sorted(p.name for p in scratch.iterdir())
    result = run_layerfs("mount", *args, str(mountpoint))
    assert result.returncode != 0
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert sorted(p.name for p in scratch.iterdir()) == before
    if case == "given-work-dir":
        assert list(work.iterdir()) == []


def test_a_background_daemon_without_syslog_logs_to_a_file_it_names(image, mountpoint, scratch):
    if os.path.exists("/dev/log"):
        pytest.skip("this machine has a syslog socket (/dev/log): the daemon logs there")
    from tests.support.mounting import layerfs_command, layerfs_env

    env = dict(layerfs_env(), XDG_STATE_HOME=str(scratch / "state"))
    result = subprocess.run(layerfs_command("mount", str(image), str(mountpoint)), env=env,
                            capture_output=True, text=True, timeout=120)
    try:
        assert result.returncode == 0, result.stderr
        logs = list((scratch / "state" / "layerfs").glob("*.log"))
        assert len(logs) == 1
        assert result.stderr.count(str(logs[0])) == 1, result.stderr
        assert wait_until(lambda: "serving" in logs[0].read_text())
    finally:
        run_layerfs("umount", str(mountpoint))
    # A daemon that ends cleanly having logged nothing above INFO removes its file.
    assert wait_until(lambda: not logs[0].exists()), logs[0].read_text()


def test_a_daemon_log_with_a_warning_is_kept(tmp_path):
    from layerfs.logfile import _remove_if_uneventful

    quiet, eventful = tmp_path / "quiet.log", tmp_path / "eventful.log"
    quiet.write_text("2026-01-01 00:00:00,000 layerfs.mount INFO: serving 3 layers at /m\n")
    eventful.write_text(quiet.read_text()
                        + "2026-01-01 00:00:01,000 layerfs.fs ERROR: read: EIO\n")
    _remove_if_uneventful(quiet)
    _remove_if_uneventful(eventful)
    assert not quiet.exists() and eventful.exists()
