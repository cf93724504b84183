"""Every write operation, applied to a kernel overlay and to layerfs over identical lowers.

After each operation the outcomes (value or errno) and the merged trees must
be the same; at the end the two upper dirs must hold the same entries,
whiteouts, opaque and redirect xattrs; and each overlay must show exactly
what the other showed when it mounts the other's upper dir.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from layerfs import treediff
from tests.support.layerspec import Dir, File, Hardlink, Special, Symlink, Whiteout
from tests.support.overlaypair import MERGED_PROPERTIES, OverlayPair, reset_work
from tests.upper import ops

pytestmark = pytest.mark.usefixtures("needs_kernel_overlay", "each_engine")

BIG = bytes(range(256)) * 4096 * 3  # 3 MiB


def stack() -> list[dict]:
    bottom = {
        b"a/file1": File(b"one"),
        b"a/file2": File(b"two"),
        b"a/sub/deep": File(b"deep", mode=0o600, uid=1000, gid=1000),
        b"a/sub/deeper/x": File(b"x"),
        b"b/x": File(b"bx"),
        b"b/y": File(b"by"),
        b"m/lo": File(b"low"),
        b"m/both": File(b"low both"),
        b"hl1": File(b"linked", mode=0o640),
        b"hl2": Hardlink(b"hl1"),
        b"big": File(BIG),
        b"sym": Symlink(b"a/file1"),
        b"fifo": Special("fifo", mode=0o600),
        b"chr": Special("chr", os.makedev(1, 3), 0o666),
        b"xf": File(b"x", xattrs={b"user.one": b"1", b"trusted.t": b"t"}),
        b"xd": Dir(xattrs={b"user.d": b"d"}),
        b"emptydir": Dir(),
        b"owned": Dir(mode=0o700, uid=1000, gid=1000),
        b"owned/f": File(b"o", uid=1000, gid=1000),
        b"sgid": Dir(mode=0o2775, gid=50),
        b"suid": File(b"s", mode=0o4755, uid=1000),
        b"lonely/only": File(b"single-layer dir"),
    }
    top = {
        b"a/file2": Whiteout(),
        b"a/new": File(b"top"),
        b"b": Dir(opaque=True),
        b"b/z": File(b"bz"),
        b"c/only-top": File(b"c"),
        b"m/hi": File(b"high"),
        b"m/both": File(b"high both"),
    }
    return [bottom, top]


def run(scratch: Path, operations: list, *, layers=None, check_each: bool = True,
        kernel_options=(), layerfs_options=(), compare_uppers: bool = True,
        swap_kernel_upper: bool = True) -> OverlayPair:
    pair = OverlayPair(scratch, layers or stack(), kernel_options=kernel_options,
                       layerfs_options=layerfs_options)
    with pair.mounted():
        pair.check()
        for operation in operations:
            pair.apply(operation)
            if check_each:
                pair.check()
        pair.check()
        kernel_view = treediff.snapshot(pair.kernel.mnt)
        layerfs_view = treediff.snapshot(pair.layerfs.mnt)
    differences = pair.upper_differences() if compare_uppers else []
    assert not differences, "upper dirs differ:\n" + "\n".join(differences)
    # Each overlay mounts the other's upper dir and shows what the other showed.
    props = (*MERGED_PROPERTIES, "mtime_ns")
    reset_work(pair.layerfs)
    with pair.kernel_mounted(pair.layerfs) as mnt:
        swapped = treediff.diff(layerfs_view, treediff.snapshot(mnt), props)
    assert not swapped, "kernel on layerfs's upper:\n" + "\n".join(map(str, swapped))
    if not swap_kernel_upper:
        return pair
    with pair.layerfs_mounted(pair.kernel) as mnt:
        swapped = treediff.diff(kernel_view, treediff.snapshot(mnt), props)
    swapped = [d for d in swapped if not (d.property == "presence" and d.left == treediff.PHANTOM)]
    assert not swapped, "layerfs on the kernel's upper:\n" + "\n".join(map(str, swapped))
    return pair


def test_files_created_written_truncated(scratch, needs_root):
    run(scratch, [
        ops.create("new", b"hello"),
        ops.create("new", b"again"),  # EEXIST
        ops.create("a/made", b"in a merged dir"),
        ops.create("lonely/made", b"in a single-layer dir"),
        ops.create("a/sub/deeper/made", b"three lower dirs up"),
        ops.write("a/file1", b"ONE"),
        ops.append("m/lo", b" appended"),
        ops.overwrite("m/both", b"replaced"),
        ops.truncate("a/new", 1),
        ops.truncate("b/z", 100),
        ops.truncate("lonely/only", 0),
        ops.write("big", b"middle", 1 << 20),
        ops.create("nope/x"),  # ENOENT
        ops.create("a/file1/x"),  # ENOTDIR
        ops.read("a/file1"),
        ops.read("big"),
        ops.fsync("a/file1"),
        ops.lstat("big"),
        ops.listdir("a"),
        ops.statvfs_namemax(),
    ])


def test_unlink_leaves_whiteouts_only_where_lower_layers_show_the_name(scratch, needs_root):
    run(scratch, [
        ops.unlink("a/file1"),          # lower: whiteout
        ops.unlink("a/new"),            # top lower layer: whiteout
        ops.create("a/file1", b"back"), # over the whiteout
        ops.unlink("a/file1"),          # whiteout again
        ops.create("fresh", b"f"),
        ops.unlink("fresh"),            # pure upper: gone, no whiteout
        ops.write("m/both", b"w"),
        ops.unlink("m/both"),           # copied up: whiteout
        ops.unlink("sym"),
        ops.unlink("fifo"),
        ops.unlink("chr"),
        ops.unlink("a/file2"),          # ENOENT (whited out below)
        ops.unlink("a"),                # EISDIR
        ops.listdir(""),
    ])


def test_mkdir_rmdir_and_opaque_dirs(scratch, needs_root):
    run(scratch, [
        ops.mkdir("newdir"),            # in the merged root: opaque
        ops.mkdir("newdir/inner"),      # in a pure upper dir: not opaque
        ops.mkdir("a/sub2", 0o700),
        ops.mkdir("a"),                 # EEXIST
        ops.rmdir("a"),                 # ENOTEMPTY
        ops.rmdir("emptydir"),          # lower: whiteout
        ops.mkdir("emptydir"),          # over the whiteout: opaque
        ops.create("emptydir/f"),
        ops.rmdir("a/file1"),           # ENOTDIR
        ops.unlink("a/sub/deeper/x"),
        ops.rmdir("a/sub/deeper"),
        ops.unlink("a/sub/deep"),
        ops.rmdir("a/sub"),             # merged-empty: whiteout
        ops.mkdir("a/sub"),
        ops.listdir("a/sub"),
        ops.unlink("m/lo"),
        ops.unlink("m/hi"),
        ops.unlink("m/both"),
        ops.rmdir("m"),                 # merged dir full of whiteouts
        ops.mkdir("m"),
        ops.rmdir("newdir/inner"),
        ops.rmdir("newdir"),
        ops.mkdir("sgid/child"),        # inherits the group and the set-gid bit
        ops.create("sgid/file"),
        ops.lstat("sgid/child"),
        ops.lstat("sgid/file"),
    ])


def test_rename_files(scratch, needs_root):
    run(scratch, [
        ops.rename("a/file1", "a/renamed"),      # lower file: copy-up, whiteout at old
        ops.rename("a/renamed", "a/again"),      # upper file not at a lower name: no whiteout
        ops.rename("a/again", "a/file1"),        # back over its whiteout
        ops.rename("m/lo", "m/hi"),              # over a lower file
        ops.rename("b/z", "lonely/z"),           # across dirs, target dir copied up
        ops.create("tmp", b"t"),
        ops.rename("tmp", "a/file2"),            # onto a name whited out below
        ops.rename("a/new", "c"),                # EISDIR
        ops.rename("missing", "x"),              # ENOENT
        ops.rename("a/file1", "a/file1"),        # itself
        ops.rename("sym", "a/sym"),
        ops.rename("big", "big2"),
        ops.read("big2"),
        ops.listdir("a"),
    ])


def test_rename_dirs_with_redirects(scratch, needs_root):
    run(scratch, [
        ops.rename("a", "a2"),                   # lower+upper merged dir, same parent
        ops.listdir("a2"),
        ops.read("a2/sub/deep"),
        ops.rename("a2/sub", "lonely/sub"),      # lower dir, to another parent: absolute
        ops.read("lonely/sub/deeper/x"),
        ops.create("lonely/sub/new", b"n"),
        ops.rename("lonely/sub", "lonely/sub2"),  # absolute redirect kept
        ops.rename("a2", "a"),                   # back to its lower name
        ops.mkdir("fresh"),
        ops.create("fresh/f"),
        ops.rename("fresh", "a/fresh"),          # pure upper dir into a merged dir
        ops.rename("emptydir", "xd"),            # over an empty dir
        ops.rename("a", "m"),                    # ENOTEMPTY
        ops.rename("a", "a/fresh/inside"),       # EINVAL: into itself
        ops.rename("c", "a/file1"),              # ENOTDIR
        ops.rmdir("lonely/sub2/deeper/x"),       # ENOTDIR
        ops.unlink("lonely/sub2/deeper/x"),
        ops.rmdir("lonely/sub2/deeper"),
        ops.listdir("lonely/sub2"),
    ])


def test_rename_dirs_without_redirects_is_exdev(scratch, needs_root):
    run(scratch, [
        ops.rename("a", "a2"),                   # EXDEV
        ops.rename("lonely", "x/lonely"),        # ENOENT
        ops.mkdir("fresh"),
        ops.rename("fresh", "fresh2"),           # pure upper: fine
        ops.rename("emptydir", "emptydir2"),     # EXDEV
    ], kernel_options=["redirect_dir=off"], layerfs_options=["redirect_dir=off"])


def test_links_symlinks_and_special_files(scratch, needs_root):
    run(scratch, [
        ops.symlink("a/file1", "newsym"),
        ops.symlink("dangling", "a/sym2"),
        ops.link("a/file1", "a/hard"),           # copies a/file1 up first
        ops.write("a/hard", b"HARD"),
        ops.read("a/file1"),
        ops.lstat("a/file1"),
        ops.link("a/new", "a/file2"),            # a new name over a whiteout
        ops.link("a", "adir"),                   # EPERM
        ops.mkfifo("newfifo"),
        ops.mknod("newchr", stat.S_IFCHR, os.makedev(1, 5)),
        ops.mknod("newblk", stat.S_IFBLK, os.makedev(7, 0)),
        ops.mknod("wh", stat.S_IFCHR, 0),        # EPERM: would read as a whiteout
        ops.mknod("regular", stat.S_IFREG, 0),
        ops.unlink("a/file1"),
        ops.lstat("a/hard"),
    ])


def test_metadata_changes_copy_up(scratch, needs_root):
    run(scratch, [
        ops.chmod("a/file1", 0o600),
        ops.chmod("a/sub", 0o700),               # a lower dir
        ops.chown("a/sub/deep", 2000, 2000),
        ops.chown("sym", 3000, 3000),            # the link itself
        ops.utime("m/lo", 1_000_000_000_000_000_000),
        ops.utime("xd", 1_100_000_000_000_000_000),
        ops.setxattr("a/file1", b"user.new", b"v"),
        ops.setxattr("xd", b"user.d", b"changed"),
        ops.removexattr("xf", b"user.one"),
        ops.removexattr("xf", b"user.none"),     # ENODATA, no copy-up
        ops.getxattr("xf", b"trusted.t"),
        ops.setxattr("lonely/only", b"trusted.overlay.foo", b"escaped"),
        ops.listxattr("lonely/only"),
        ops.chmod("suid", 0o4711),
        ops.chown("owned/f", 0, 0),
        ops.lstat("owned/f"),
        ops.listxattr("xf"),
    ])


def test_copy_up_of_a_file_linked_to_a_hidden_name_shows_one_link(scratch, needs_root):
    # In its layer the file has two names, one shadowed by an upper layer: the
    # merged view shows nlink 2 until the copy-up makes it one upper file. The
    # count was read (and cached by the kernel) before the open that copies up,
    # which sends no attributes back: the daemon must drop the cached count.
    layers = [{b"shown": File(b"data"), b"hidden": Hardlink(b"shown")},
              {b"hidden": File(b"over it")}]
    run(scratch, [
        ops.lstat("shown"),
        ops.write("shown", b"", 0),              # opened for writing, nothing written
        ops.lstat("shown"),
    ], layers=layers)


def test_big_and_sparse_files_copy_up_whole(scratch, needs_root):
    sparse = File(b"")
    layers = stack()
    layers[0][b"sparse"] = sparse
    pair_ops = [
        ops.append("big", b"tail"),
        ops.read("big"),
        ops.chmod("sparse", 0o600),
    ]
    run(scratch, pair_ops, layers=layers)


def test_lower_hard_links_stay_one_inode_as_with_index_on(scratch, needs_root):
    # The kernel keeps lower hard links together only with index=on (it then
    # copies up one name at a time through its index dir: its upper dir holds
    # other names than layerfs's, which links every name at once).
    run(scratch, [
        ops.write("hl1", b"LINKED"),
        ops.read("hl2"),
        ops.lstat("hl2"),
        ops.rename("hl1", "hl2"),                # two names of one inode: nothing
        ops.link("hl2", "hl3"),
        ops.unlink("hl1"),
        ops.lstat("hl2"),
        ops.read("hl3"),
    ], kernel_options=["index=on"], compare_uppers=False,
        # Its upper then counts links in its index dir (overlay.nlink xattrs).
        swap_kernel_upper=False)


def test_uppers_committed_as_lower_layers_keep_their_redirects(scratch, needs_root):
    """Each upper becomes a lower layer of the next mount (container commits):
    redirects and whiteouts in middle layers are followed as the kernel does."""
    pair = OverlayPair(scratch, stack())
    rounds = [
        [ops.rename("a", "a2"), ops.rename("a2/sub", "a2/sub2"), ops.unlink("m/lo")],
        [ops.rename("a2", "c/a3"), ops.rename("c/a3/sub2", "lonely/sub3"),
         ops.create("c/a3/new", b"n")],
        [ops.rename("c/a3", "a"), ops.rename("lonely/sub3/deeper", "deeper"),
         ops.rmdir("b")],
    ]
    for number, operations in enumerate(rounds):
        with pair.mounted():
            pair.check()
            for operation in operations:
                pair.apply(operation)
                pair.check()
        differences = pair.upper_differences()
        assert not differences, f"round {number}: upper dirs differ:\n" + "\n".join(differences)
        pair.rotate()
    with pair.mounted():
        pair.check()


def test_userxattr_writes_user_overlay_xattrs_and_renames_no_lower_dirs(scratch, needs_root):
    """-o userxattr (a normal user's default): user.overlay.* xattrs, and EXDEV for
    lower dirs, since the kernel follows no redirects with userxattr."""
    pair = run(scratch, [
        ops.mkdir("newdir"),
        ops.rmdir("emptydir"),
        ops.mkdir("emptydir"),
        ops.unlink("a/file1"),
        ops.rename("a", "a2"),                   # EXDEV
        ops.mkdir("fresh"),
        ops.rename("fresh", "a/fresh"),          # pure upper: fine, made opaque
        ops.chmod("m/lo", 0o600),
    ], kernel_options=["userxattr"], layerfs_options=["userxattr"])
    upper = pair.layerfs.upper
    assert os.getxattr(upper / "emptydir", "user.overlay.opaque") == b"y"
    assert os.getxattr(upper / "a/fresh", "user.overlay.opaque") == b"y"
    assert all(not name.startswith("trusted.overlay.") for path in upper.rglob("*")
               for name in os.listxattr(path, follow_symlinks=False))


def test_open_files_across_copy_up_unlink_and_exchange(scratch, needs_root):
    run(scratch, [
        ops.reader_sees_writer("a/file1", b"NEW"),
        ops.reader_sees_writer("lonely/only", b"changed"),
        ops.unlinked_while_open("m/lo", b"still here"),
        ops.create("fresh", b"f"),
        ops.unlinked_while_open("fresh", b"written after unlink"),
        ops.exchange("a/new", "m/hi"),           # two files
        ops.exchange("a", "lonely"),             # two dirs: both get redirects
        ops.exchange("b", "xf"),                 # a dir and a file
        ops.exchange("c", "nothing"),            # ENOENT
        ops.listdir("a"),
        ops.listdir("lonely"),
    ])


def test_permissions_are_checked_for_other_users(scratch, needs_root):
    """default_permissions with allow_other: another uid gets the kernel's EACCES/EPERM."""
    run(scratch, [
        ops.as_user(1000, ops.write("a/file1", b"no")),           # root's 0644 file
        ops.as_user(1000, ops.create("a/new-by-user")),           # root's 0755 dir
        ops.as_user(1000, ops.unlink("a/file1")),
        ops.as_user(1000, ops.write("owned/f", b"mine")),         # the user's own file
        ops.as_user(1000, ops.create("owned/made", b"by 1000")),
        ops.as_user(1000, ops.chmod("a/file1", 0o777)),           # EPERM: not the owner
        ops.as_user(1000, ops.chown("owned/f", 0, 0)),            # EPERM
        ops.as_user(1000, ops.read("a/sub/deep")),                # 0600 of uid 1000
        ops.as_user(2000, ops.read("a/sub/deep")),                # EACCES
        ops.as_user(1000, ops.mkdir("sgid/d")),
        ops.lstat("owned/made"),
    ], layerfs_options=["allow_other"])
