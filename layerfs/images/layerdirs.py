"""Extracted layer directories: the simplest image form.

``<image-dir>/`` holds one subdirectory per layer. Their order is given by a
``layers`` file (one relative directory a line, bottom first; blank lines and
``#`` comments ignored) or, without it, by the sorted subdirectory names.
Layers may also be named one by one (``--layer``, ``-o lowerdir=``).
"""

from __future__ import annotations

import os
from pathlib import Path

from ..errors import ImageError
from ..layer import Layer
from .image import Image

ORDER_FILE = "layers"


def is_layer_dirs(path: Path) -> bool:
    if not path.is_dir():
        return False
    if (path / ORDER_FILE).is_file():
        return True
    return any(entry.is_dir(follow_symlinks=False) for entry in os.scandir(path))


def layer_from_dir(path: str | os.PathLike[str], label: str | None = None) -> Layer:
    """A layer given by its directory; fails clearly if it is not one."""
    root = Path(path)
    if not root.exists():
        raise ImageError(f"{root}: layer directory does not exist")
    if not root.is_dir():
        raise ImageError(f"{root}: layer is not a directory")
    if not os.access(root, os.R_OK | os.X_OK):
        raise ImageError(f"{root}: layer directory is not readable")
    return Layer(root=str(root.resolve()), label=label or root.name)


def open_layer_dirs(path: Path) -> Image:
    order_file = path / ORDER_FILE
    if order_file.is_file():
        names = []
        for number, line in enumerate(order_file.read_text().splitlines(), 1):
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            if os.path.isabs(line) or ".." in Path(line).parts:
                raise ImageError(f"{order_file}:{number}: layer '{line}' must be a "
                                 "relative path inside the image directory")
            names.append(line)
        if not names:
            raise ImageError(f"{order_file}: lists no layers")
    else:
        names = sorted(entry.name for entry in os.scandir(path)
                       if entry.is_dir(follow_symlinks=False))
        if not names:
            raise ImageError(f"{path}: no layer directories in it")
    layers = [layer_from_dir(path / name, label=name) for name in names]
    return Image(layers=layers, name=path.name, form="layer-dirs")


def open_explicit_layers(dirs: list[str]) -> Image:
    """Layers named one by one, bottom first."""
    return Image(layers=[layer_from_dir(d, label=d) for d in dirs], form="layer-dirs")
