"""Images for the explore tests: small layer stacks (any whiteout form) and OCI layouts
built with umoci, the way users build them."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

from tests.support.layerspec import Dir, File, Special, Symlink, Whiteout, materialize
from tests.support.umoci import have, rootless, run, umoci_layer, umoci_unpack

BIG = b"B" * 5000


def stack() -> list[dict]:
    """Three layers: a file rewritten twice, a dir deleted, an opaque dir, a dir replaced
    by a file, a big file added then deleted, a duplicated file."""
    return [
        {b"etc/hosts": File(b"a" * 10), b"etc/passwd": File(b"root"),
         b"gone/x": File(b"x" * 100), b"gone/y": File(b"y" * 50),
         b"opq/old": File(b"old"), b"opq/kept": File(b"kept"),
         b"swap/c": File(b"c"), b"bin/sh": File(b"sh", mode=0o755),
         b"bin/sh-link": Symlink(b"sh"), b"tmp/big": File(BIG)},
        {b"etc/hosts": File(b"b" * 20), b"gone": Whiteout(), b"opq": Dir(opaque=True),
         b"opq/new": File(b"n"), b"opq/kept": File(b"kept"), b"swap": File(b"now a file"),
         b"copy/big-again": File(BIG)},
        {b"etc/hosts": File(b"c" * 30, mode=0o600), b"tmp/big": Whiteout(),
         b"bin/sh-link": Symlink(b"/bin/sh"), b"etc/new": File(b"new")},
    ]


def layer_dirs_image(base: Path, form: str = "oci", layers: list[dict] | None = None) -> Path:
    """A directory of extracted layers (``l0``, ``l1``, ...) with a ``layers`` file."""
    layers = stack() if layers is None else layers
    for number, layer in enumerate(layers):
        materialize(layer, base / f"l{number}", form)
    (base / "layers").write_text("".join(f"l{n}\n" for n in range(len(layers))))
    return base


def umoci_image(work: Path) -> Path:
    """An OCI layout, tag ``v3``: base; changes (edit, delete file, delete dir, dir ->
    file, new files); an opaque insert over /data. Tags v1, v2, v3 are its prefixes."""
    layout = work / "layout"
    bundle = work / "bundle"
    run("umoci", "init", "--layout", layout)
    run("umoci", "new", "--image", f"{layout}:v1")
    umoci_layer(layout, "v1", "v1", bundle, _base_files, "--history.created_by", "base files")
    umoci_layer(layout, "v1", "v2", bundle, _edits, "--history.created_by", "edit things")
    source = work / "opaque-src"
    (source / "only").mkdir(parents=True)
    (source / "only/here").write_text("opaque\n")
    run("umoci", "tag", "--image", f"{layout}:v2", "v3")
    run("umoci", "insert", *rootless(), "--history.created_by", "opaque data",
        "--image", f"{layout}:v3", "--opaque", source, "/data")
    return layout


def _base_files(root: Path) -> None:
    (root / "etc/keep").mkdir(parents=True)
    (root / "etc/hosts").write_text("127.0.0.1 localhost\n")
    (root / "etc/config").write_text("config\n")
    (root / "etc/keep/a").write_text("a\n")
    (root / "data/dir1").mkdir(parents=True)
    (root / "data/dir1/a").write_text("dir1/a\n")
    (root / "data/big").write_bytes(BIG)
    (root / "bin").mkdir()
    (root / "bin/tool").write_bytes(b"\x7fELF tool")
    os.chmod(root / "bin/tool", 0o755)
    os.symlink("tool", root / "bin/link")
    os.setxattr(root / "etc/hosts", "user.comment", b"hello")
    if os.geteuid() == 0:
        (root / "home/user").mkdir(parents=True)
        (root / "home/user/file").write_text("mine\n")
        os.chown(root / "home/user/file", 1000, 1000)
        os.chmod(root / "bin/tool", 0o4755)
        (root / "dev").mkdir()
        os.mknod(root / "dev/null0", 0o666 | 0o020000, os.makedev(1, 3))


def _edits(root: Path) -> None:
    (root / "etc/config").unlink()
    shutil.rmtree(root / "etc/keep")
    (root / "etc/keep").write_text("now a file\n")
    (root / "etc/hosts").write_text("127.0.0.1 changed\n")
    os.setxattr(root / "etc/hosts", "user.comment", b"changed")
    os.chmod(root / "bin/tool", 0o700)
    (root / "new").mkdir()
    (root / "new/file").write_text("new\n")
    (root / "new/big-copy").write_bytes(BIG)


def layout_tags(layout: Path) -> list[str]:
    index = json.loads((layout / "index.json").read_text())
    return [m.get("annotations", {}).get("org.opencontainers.image.ref.name", "")
            for m in index.get("manifests", [])]


__all__ = ["Dir", "File", "Special", "Symlink", "Whiteout", "layer_dirs_image", "stack",
           "umoci_image", "umoci_unpack", "have", "run", "layout_tags"]
