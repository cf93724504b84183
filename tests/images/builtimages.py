"""Test images built at test time with the real tools (umoci, skopeo), as users build them.

:func:`build_umoci_layout` makes an OCI layout whose tags stack up every
whiteout form umoci writes: explicit ``.wh.`` files (repack), a 259-byte
whiteout name (FORMATS.md 1.4.5), a directory replaced by a file, an opaque
directory (``insert --opaque``) and a whiteout-only layer (``insert
--whiteout``, no parent entries). :func:`umoci_reference` is ``umoci
unpack`` of a tag: the tree a mount must equal.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from tests.support.umoci import have, rootless, run, umoci_layer, umoci_unpack

LONG = "L" * 255
ODD_NAMES = [b"caf\xe9\xff", b"with\nnewline", b"sp ace:colon,comma=eq\\"]
TAG = "v4"


def _populate_base(rootfs: Path) -> None:
    (rootfs / "etc/keep").mkdir(parents=True)
    (rootfs / "etc/hosts").write_text("127.0.0.1 localhost\n")
    (rootfs / "etc/config.txt").write_text("config\n")
    (rootfs / "etc/keep/a").write_text("a\n")
    (rootfs / "data/dir1").mkdir(parents=True)
    (rootfs / "data/dir1/a").write_text("dir1/a\n")
    (rootfs / "data/dir1/b").write_text("dir1/b\n")
    os.setxattr(rootfs / "data/dir1", "user.dirattr", b"on a dir")
    (rootfs / "data/dir2").mkdir()
    (rootfs / "data/dir2/x").write_text("x\n")
    (rootfs / "bin").mkdir()
    (rootfs / "bin/tool").write_bytes(b"\x7fELF tool")
    os.chmod(rootfs / "bin/tool", 0o4755)
    os.symlink("tool", rootfs / "bin/link")
    os.symlink("/etc/hosts", rootfs / "bin/abs")
    (rootfs / "hard").mkdir()
    (rootfs / "hard/orig").write_text("linked\n")
    os.link(rootfs / "hard/orig", rootfs / "hard/link")
    (rootfs / "odd").mkdir()
    for name in ODD_NAMES:
        with open(os.fsencode(rootfs / "odd") + b"/" + name, "wb") as out:
            out.write(name)
    (rootfs / "odd" / LONG).write_text("long name\n")
    (rootfs / "run").mkdir()
    os.mkfifo(rootfs / "run/fifo")
    (rootfs / "private").mkdir(mode=0o700)
    (rootfs / "private/secret").write_text("secret\n")
    os.chmod(rootfs / "private/secret", 0o600)
    (rootfs / "home/user").mkdir(parents=True)
    (rootfs / "home/user/file").write_text("mine\n")
    os.chown(rootfs / "home/user/file", 1000, 1000)
    (rootfs / "comment").write_text("with xattr\n")
    os.setxattr(rootfs / "comment", "user.comment", b"hello")
    (rootfs / "dev").mkdir(exist_ok=True)
    if os.geteuid() == 0:
        os.mknod(rootfs / "dev/null0", 0o666 | 0o020000, os.makedev(1, 3))


def _change_for_v2(rootfs: Path) -> None:
    (rootfs / "etc/config.txt").unlink()
    shutil.rmtree(rootfs / "data/dir2")
    (rootfs / "data/dir1/a").unlink()
    (rootfs / "odd" / LONG).unlink()
    shutil.rmtree(rootfs / "etc/keep")
    (rootfs / "etc/keep").write_text("now a file\n")
    (rootfs / "etc/hosts").write_text("127.0.0.1 changed\n")
    (rootfs / "new").mkdir()
    (rootfs / "new/file").write_text("new\n")


def build_umoci_layout(work: Path) -> Path:
    """An OCI layout with tags v1..v4 (see the module docstring); returns its path."""
    layout = work / "layout"
    bundle = work / "bundle"
    run("umoci", "init", "--layout", layout)
    run("umoci", "new", "--image", f"{layout}:v1")
    umoci_layer(layout, "v1", "v1", bundle, _populate_base)
    umoci_layer(layout, "v1", "v2", bundle, _change_for_v2)
    opaque_source = work / "opaque"
    (opaque_source / "only").mkdir(parents=True)
    (opaque_source / "only/here").write_text("opaque\n")
    run("umoci", "tag", "--image", f"{layout}:v2", "v3")
    run("umoci", "insert", *rootless(), "--image", f"{layout}:v3", "--opaque", opaque_source,
        "/data")
    run("umoci", "tag", "--image", f"{layout}:v3", "v4")
    run("umoci", "insert", *rootless(), "--image", f"{layout}:v4", "--whiteout", "/bin/abs")
    return layout


def umoci_reference(layout: Path, tag: str, work: Path) -> Path:
    """``umoci unpack`` of ``layout:tag``: the rootfs a mount of it must equal."""
    return umoci_unpack(layout, tag, work / f"reference-{tag}")


__all__ = ["LONG", "ODD_NAMES", "TAG", "build_umoci_layout", "have", "run", "umoci_reference"]
