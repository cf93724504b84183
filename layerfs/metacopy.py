"""Where the data of a metadata-only copy is (the kernel's metacopy=on).

An upper file marked metacopy holds attributes only; its data is the first real
file below it, at its redirect (absolute, or a name in the same dir) or at its
own name, as the kernel looks it up.
"""

from __future__ import annotations

import os
import stat
from typing import Sequence

from .errors import LayerError
from .layerview import LayerView
from .tree import DataElsewhere
from .whiteouts import METACOPY_XATTRS

_METACOPY_XATTR_SET = frozenset(METACOPY_XATTRS)


def metacopy_data(views: Sequence[LayerView], root_layers: Sequence[int], position: int,
                  inside: bytes, where: dict[int, bytes], name: bytes,
                  redirect: bytes | None) -> DataElsewhere:
    """The data of the metacopy file ``inside`` of layer ``position``; ``where``: its
    directory's path in each layer that holds it (with a trailing slash)."""
    if redirect is not None and redirect.startswith(b"/"):
        candidates = [(p, redirect.lstrip(b"/")) for p in root_layers if p < position]
    else:
        candidates = [(p, path + (redirect or name)) for p, path in where.items()
                      if p < position]
    for candidate, path in candidates:
        layer = views[candidate].layer
        try:
            with layer.at(path) as full:
                st = os.lstat(full)
        except (FileNotFoundError, NotADirectoryError):
            continue
        except OSError as exc:
            raise LayerError.from_os_error(layer, path, exc) from exc
        if not stat.S_ISREG(st.st_mode):
            break
        if not views[candidate].overlay_xattrs(path, _METACOPY_XATTR_SET):
            return DataElsewhere(candidate, path, st.st_blocks)
    raise LayerError(f"{os.fsdecode(views[position].layer.path_of(inside))}: a metacopy "
                     "file (metacopy=on) whose data is in no lower layer")
