"""A synthetic layered image for the benchmark, generated once and reused.

The image is a stack of extracted layer directories, bottom first:

- ``00-base``: about 40% of the files, a distro-like tree (depth mostly 2-7,
  a few huge directories and many small ones, names of realistic length);
- ``01-big``: one big file (``opt/BENCH.layerfs/big.bin``) with incompressible
  data, for the streaming read;
- ``02-...``: upper layers that add files to existing directories, add new
  subtrees, overwrite lower files, and delete files and whole directories
  with whiteouts and opaque directories.

Whiteouts use the overlay's native encoding (a 0/0 character device; the
``trusted.overlay.opaque=y`` xattr) so the kernel overlay, fuse-overlayfs and
layerfs all read the same copy. Without root (no mknod, no trusted xattrs)
the AUFS form (``.wh.NAME``, ``.wh..wh..opq``) is used instead, which the
kernel overlay cannot read.

Generation is deterministic for a given :class:`ImageParams`; a finished
image carries ``manifest.json`` and is reused when the parameters match.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import shutil
import stat
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

GENERATOR_VERSION = 2
MANIFEST = "manifest.json"

# Outside the generated namespace (generated names are lower case), so no
# whiteout or opaque directory ever hides them.
BENCH_DIR = "opt/BENCH.layerfs"
PROBE_PATH = BENCH_DIR + "/probe/deep/file.txt"
BIG_PATH = BENCH_DIR + "/big.bin"

TOP_DIRS = ("usr", "etc", "var", "opt", "lib", "bin", "sbin", "srv", "home", "app", "root")
# Relative chance of hanging a new directory below a directory of this depth.
PARENT_DEPTH_WEIGHTS = (0.3, 3.0, 5.0, 6.0, 5.0, 3.5, 2.0, 1.0, 0.5, 0.25, 0.1)
SYLLABLES = (
    "ab", "al", "an", "ar", "ba", "bin", "ca", "co", "com", "con", "core", "da", "data",
    "de", "dev", "di", "do", "el", "en", "er", "ex", "fi", "fo", "gen", "go", "io", "is",
    "ka", "ker", "la", "lib", "li", "lo", "ma", "me", "mod", "na", "net", "ni", "no", "on",
    "pa", "pi", "po", "py", "ra", "re", "ri", "ro", "sa", "se", "si", "so", "sys", "ta",
    "te", "ti", "to", "un", "ut", "util", "va", "ve", "vi", "x", "xa", "yo", "za", "zo",
)
EXTENSIONS = (
    ("", 14), (".py", 14), (".pyc", 8), (".h", 8), (".c", 3), (".so", 4), (".js", 10),
    (".json", 5), (".txt", 4), (".md", 3), (".html", 3), (".gz", 4), (".mo", 5), (".conf", 2),
    (".go", 3), (".rb", 2), (".pm", 2), (".png", 3), (".svg", 2), (".ts", 3), (".xml", 2),
)
ODD_NAMES = ("résumé", "données", "数据", "ファイル", "naïve café", "with space", "x" * 120)
# (share, smallest, largest) size bands; log-uniform inside a band. Mean ~4 KiB.
SIZE_BANDS = ((0.05, 0, 0), (0.40, 1, 1024), (0.50, 1025, 8192), (0.048, 8193, 65536),
              (0.002, 65537, 1 << 20))
BLOB_SIZE = 4 << 20


@dataclass(frozen=True)
class ImageParams:
    files: int = 200_000
    layers: int = 5
    big_size: int = 2 << 30
    seed: int = 1
    native: bool = True

    def key(self) -> str:
        text = json.dumps({"v": GENERATOR_VERSION, **asdict(self)}, sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:12]


@dataclass
class SyntheticImage:
    root: str
    params: ImageParams
    layer_dirs: list[str]
    """Absolute layer roots, bottom first."""
    probe: str = PROBE_PATH
    big_file: str = BIG_PATH
    stats: dict = field(default_factory=dict)

    def lowerdir(self) -> str:
        """The kernel's ``lowerdir=`` value: top first, ``:`` escaped."""
        return ":".join(d.replace("\\", "\\\\").replace(":", "\\:")
                        for d in reversed(self.layer_dirs))

    @classmethod
    def load(cls, root: Path) -> "SyntheticImage":
        data = json.loads((root / MANIFEST).read_text())
        data["params"] = ImageParams(**data["params"])
        return cls(**data)


def ensure_image(workdir: Path, params: ImageParams,
                 log: Callable[[str], None] = print) -> SyntheticImage:
    """The image for ``params`` under ``workdir``, generated unless already there."""
    root = workdir / f"image-{params.key()}"
    if (root / MANIFEST).exists():
        try:
            image = SyntheticImage.load(root)
            if image.params == params:
                log(f"reusing image {root}")
                return image
        except (ValueError, TypeError, KeyError):
            pass
    if root.exists():
        shutil.rmtree(root)
    root.mkdir(parents=True)
    log(f"generating image {root} ({params.files} files, {params.layers} layers, "
        f"big file {params.big_size} bytes)")
    started = time.monotonic()
    image = _Generator(params, root, log).run()
    image.stats["generate_seconds"] = round(time.monotonic() - started, 1)
    (root / MANIFEST).write_text(json.dumps(
        {**asdict(image), "params": asdict(params)}, indent=1))
    log(f"image ready in {image.stats['generate_seconds']} s")
    return image


class _Dir:
    """A directory of the merged view as the generator models it."""

    __slots__ = ("path", "depth", "weight", "subdirs", "files")

    def __init__(self, path: str, depth: int, weight: float) -> None:
        self.path = path
        self.depth = depth
        self.weight = weight
        self.subdirs: set[str] = set()
        self.files: set[str] = set()

    def names(self) -> set[str]:
        return self.subdirs | self.files


def _join(parent: str, name: str) -> str:
    return f"{parent}/{name}" if parent else name


class _Generator:
    def __init__(self, params: ImageParams, root: Path, log: Callable[[str], None]) -> None:
        self.params = params
        self.root = root
        self.log = log
        self.rng = random.Random(params.seed)
        self.blob = self.rng.randbytes(BLOB_SIZE)
        self.tree: dict[str, _Dir] = {"": _Dir("", 0, 0.0)}
        self.stats: dict = {"layers": []}
        # Paths whited out in the layer being written: not to be reused in it.
        self.whited_out: set[str] = set()

    # -- the merged-view model -------------------------------------------------

    def _add_dir(self, parent: _Dir, name: str) -> _Dir:
        weight = min(self.rng.paretovariate(1.1), 300.0)
        node = _Dir(_join(parent.path, name), parent.depth + 1, weight)
        parent.subdirs.add(name)
        self.tree[node.path] = node
        return node

    def _drop_subtree(self, node: _Dir) -> None:
        for name in list(node.subdirs):
            self._drop_subtree(self.tree.pop(_join(node.path, name)))
        node.subdirs.clear()
        node.files.clear()

    def _pick_parent(self, dirs_by_depth: list[list[_Dir]]) -> _Dir:
        depths = [d for d in range(len(dirs_by_depth)) if dirs_by_depth[d]]
        weights = [PARENT_DEPTH_WEIGHTS[min(d, len(PARENT_DEPTH_WEIGHTS) - 1)] for d in depths]
        depth = self.rng.choices(depths, weights)[0]
        return self.rng.choice(dirs_by_depth[depth])

    def _by_depth(self) -> list[list[_Dir]]:
        result: list[list[_Dir]] = []
        for node in self.tree.values():
            while len(result) <= node.depth:
                result.append([])
            result[node.depth].append(node)
        return result

    # -- names and contents ----------------------------------------------------

    def _word(self) -> str:
        rng = self.rng
        word = "".join(rng.choice(SYLLABLES) for _ in range(rng.choice((1, 2, 2, 3, 3, 4))))
        roll = rng.random()
        if roll < 0.15:
            word += rng.choice(("-", "_")) + "".join(
                rng.choice(SYLLABLES) for _ in range(rng.randint(1, 3)))
        elif roll < 0.25:
            word += str(rng.randint(0, 99))
        elif roll < 0.28:
            word += f"-{rng.randint(0, 9)}.{rng.randint(0, 30)}.{rng.randint(0, 9)}"
        return word

    def _fresh_name(self, parent: _Dir, *, is_dir: bool) -> str:
        rng = self.rng
        taken = parent.names()
        while True:
            if rng.random() < 0.002:
                name = rng.choice(ODD_NAMES) + str(rng.randint(0, 9999))
            else:
                name = self._word()
                if not is_dir:
                    exts, weights = zip(*EXTENSIONS, strict=True)
                    name += rng.choices(exts, weights)[0]
            if name not in taken and _join(parent.path, name) not in self.whited_out:
                return name

    def _size(self) -> int:
        roll = self.rng.random()
        for share, low, high in SIZE_BANDS:
            if roll < share:
                if high == 0:
                    return 0
                return int(round(low * (high / low) ** self.rng.random()))
            roll -= share
        return 0

    def _write_file(self, path: Path, size: int) -> None:
        mode = 0o755 if self.rng.random() < 0.08 else 0o644
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
        try:
            offset = self.rng.randrange(0, BLOB_SIZE - min(size, BLOB_SIZE) + 1)
            remaining = size
            while remaining > 0:
                chunk = min(remaining, BLOB_SIZE - offset)
                os.write(fd, self.blob[offset:offset + chunk])
                remaining -= chunk
                offset = 0
        finally:
            os.close(fd)

    # -- writing a layer -------------------------------------------------------

    def _whiteout(self, layer: Path, relpath: str) -> None:
        self.whited_out.add(relpath)
        path = layer / relpath
        path.parent.mkdir(parents=True, exist_ok=True)
        if self.params.native:
            os.mknod(path, stat.S_IFCHR | 0o600, os.makedev(0, 0))
        else:
            (path.parent / (".wh." + path.name)).touch()

    def _make_opaque(self, layer: Path, relpath: str) -> None:
        path = layer / relpath
        path.mkdir(parents=True, exist_ok=True)
        if self.params.native:
            os.setxattr(path, "trusted.overlay.opaque", b"y")
        else:
            (path / ".wh..wh..opq").touch()

    def _put_entry(self, layer: Path, relpath: str, links: list[str]) -> str:
        """Create a regular file, symlink or (with ``links``) hard link; return its kind."""
        path = layer / relpath
        path.parent.mkdir(parents=True, exist_ok=True)
        roll = self.rng.random()
        if roll < 0.04:
            target = self.rng.choice(("../" + self._word(), "/usr/lib/" + self._word(),
                                      self._word() + ".so.1"))
            os.symlink(target, path)
            return "symlink"
        if roll < 0.045 and links:
            os.link(layer / self.rng.choice(links), path)
            return "hardlink"
        self._write_file(path, self._size())
        links.append(relpath)
        return "file"

    def _layer_shares(self) -> list[int]:
        n = self.params.layers
        if n == 1:
            return [self.params.files]
        rest = [1.0 / (i + 1) for i in range(n - 1)]
        weights = [0.4] + [0.6 * w / sum(rest) for w in rest]
        counts = [int(self.params.files * w) for w in weights]
        counts[0] += self.params.files - sum(counts)
        return counts

    def run(self) -> SyntheticImage:
        counts = self._layer_shares()
        layers_root = self.root / "layers"
        layer_dirs = []
        for position, count in enumerate(counts):
            if position == 1:
                layer_dirs.append(self._big_layer(layers_root / "01-big"))
            name = "00-base" if position == 0 else f"{len(layer_dirs):02d}-layer{position}"
            layer = layers_root / name
            layer.mkdir(parents=True)
            if position == 0:
                self._base_layer(layer, count)
            else:
                self._upper_layer(layer, count)
            layer_dirs.append(str(layer))
            self.log(f"  layer {name}: {self.stats['layers'][-1]}")
        if len(counts) == 1:
            layer_dirs.append(self._big_layer(layers_root / "01-big"))
        self.stats["visible_files_modelled"] = sum(len(d.files) for d in self.tree.values())
        self.stats["visible_dirs_modelled"] = len(self.tree)
        # What find(1) should list: the modelled tree (root included) plus
        # BENCH_DIR, probe/, deep/, file.txt and big.bin.
        self.stats["expected_entries"] = (self.stats["visible_files_modelled"]
                                          + len(self.tree) + 5)
        return SyntheticImage(str(self.root), self.params, layer_dirs, stats=self.stats)

    def _big_layer(self, layer: Path) -> str:
        path = layer / BIG_PATH
        path.parent.mkdir(parents=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        try:
            remaining = self.params.big_size
            while remaining > 0:
                chunk = min(remaining, BLOB_SIZE)
                os.write(fd, self.blob[:chunk])
                remaining -= chunk
        finally:
            os.close(fd)
        self.stats["layers"].append({"name": layer.name, "big_file": self.params.big_size})
        self.log(f"  layer {layer.name}: big file of {self.params.big_size} bytes")
        return str(layer)

    def _base_layer(self, layer: Path, count: int) -> None:
        root = self.tree[""]
        for name in TOP_DIRS:
            self._add_dir(root, name).weight = 0.2
        n_dirs = max(len(TOP_DIRS), count // 9)
        by_depth = self._by_depth()
        for _ in range(n_dirs - len(TOP_DIRS)):
            parent = self._pick_parent(by_depth)
            child = self._add_dir(parent, self._fresh_name(parent, is_dir=True))
            while len(by_depth) <= child.depth:
                by_depth.append([])
            by_depth[child.depth].append(child)
        for node in self.tree.values():
            (layer / node.path).mkdir(exist_ok=True)
        probe = layer / PROBE_PATH
        probe.parent.mkdir(parents=True)
        probe.write_bytes(b"probe\n")
        kinds = self._fill(layer, count, list(self.tree.values()))
        self.stats["layers"].append({"name": layer.name, "dirs": len(self.tree), **kinds})

    def _fill(self, layer: Path, count: int, dirs: list[_Dir]) -> dict[str, int]:
        """Add ``count`` new entries to ``dirs``, heavy-tailed over directories."""
        kinds: dict[str, int] = {}
        links: list[str] = []
        weights = [d.weight for d in dirs]
        for parent in self.rng.choices(dirs, weights, k=count):
            name = self._fresh_name(parent, is_dir=False)
            kind = self._put_entry(layer, _join(parent.path, name), links)
            parent.files.add(name)
            kinds[kind] = kinds.get(kind, 0) + 1
        return kinds

    def _upper_layer(self, layer: Path, count: int) -> None:
        rng = self.rng
        stats: dict = {"name": layer.name}
        self.whited_out = set()
        candidates = [d for d in self.tree.values() if d.depth >= 2]
        # Whole directories deleted, then directories made opaque (their lower
        # content hidden, a few new files inside).
        n_special = max(1, len(candidates) // 500)
        chosen = rng.sample(candidates, min(len(candidates), 2 * n_special))
        deleted, opaque = chosen[:n_special], chosen[n_special:]
        n_deleted = 0
        for node in sorted(deleted, key=lambda node: node.path):  # ancestors first
            if node.path not in self.tree:  # inside a subtree deleted just before
                continue
            self._drop_subtree(node)
            del self.tree[node.path]
            parent_path, _, name = node.path.rpartition("/")
            self.tree[parent_path].subdirs.discard(name)
            self._whiteout(layer, node.path)
            n_deleted += 1
        stats["dir_whiteouts"] = n_deleted
        # Not around a deleted directory either: a whiteout in a directory that
        # only this layer provides hides nothing, and the kernel then lists it.
        kept = []
        for node in sorted(opaque, key=lambda node: node.path):  # ancestors first
            if node.path not in self.tree or any(  # hidden by an opaque ancestor
                    path.startswith(node.path + "/") for path in self.whited_out):
                continue
            self._drop_subtree(node)
            self._make_opaque(layer, node.path)
            kept.append(node)
        opaque = kept
        stats["opaque_dirs"] = len(opaque)
        # File whiteouts and overwrites, among the files still visible.
        visible = [(d, name) for d in self.tree.values() if d not in opaque
                   for name in sorted(d.files)]  # sorted: sets iterate in hash order
        n_whiteouts = int(count * 0.05)
        n_overwrites = int(count * 0.20)
        picked = rng.sample(visible, min(len(visible), n_whiteouts + n_overwrites))
        for node, name in picked[:n_whiteouts]:
            node.files.discard(name)
            self._whiteout(layer, _join(node.path, name))
        for node, name in picked[n_whiteouts:]:
            path = layer / _join(node.path, name)
            path.parent.mkdir(parents=True, exist_ok=True)
            self._write_file(path, self._size())
        stats["file_whiteouts"] = min(n_whiteouts, len(picked))
        stats["overwrites"] = max(0, len(picked) - n_whiteouts)
        # New subtrees, then new files spread over old and new directories.
        remaining = count - stats["overwrites"]
        n_new_dirs = max(1, int(count * 0.15) // 6)
        by_depth = self._by_depth()
        new_dirs = []
        for _ in range(n_new_dirs):
            parent = self._pick_parent(by_depth)
            child = self._add_dir(parent, self._fresh_name(parent, is_dir=True))
            (layer / child.path).mkdir(parents=True, exist_ok=True)
            new_dirs.append(child)
            while len(by_depth) <= child.depth:
                by_depth.append([])
            by_depth[child.depth].append(child)
        stats["new_dirs"] = len(new_dirs)
        for node in opaque:
            node.weight = max(node.weight, 5.0)
        kinds = self._fill(layer, remaining, list(self.tree.values()))
        stats.update(kinds)
        self.stats["layers"].append(stats)
