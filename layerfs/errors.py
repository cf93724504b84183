"""layerfs's exceptions, and the one place where any error becomes an errno.

User-facing failures (bad image, bad option, cannot mount) are
:class:`LayerfsError`: their ``str()`` is the one line the CLI prints.
Inside the FUSE daemon every exception goes through :func:`errno_for`.
"""

from __future__ import annotations

import errno
import os
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .layer import Layer


class LayerfsError(Exception):
    """A failure the user caused or can fix; the message names what is wrong.

    Its ``str()`` is always one line: names taken from an image may hold newlines and
    other control characters, shown escaped."""

    errno = errno.EIO

    def __str__(self) -> str:
        return one_line(super().__str__())


_CONTROL = {code: f"\\x{code:02x}" for code in [*range(0x20), *range(0x7F, 0xA0)]}
_CONTROL.update({0x2028: "\\u2028", 0x2029: "\\u2029"})
_CONTROL.update({ord("\n"): "\\n", ord("\t"): "\\t", ord("\r"): "\\r"})


def one_line(text: str) -> str:
    """``text`` with control characters (newlines included) escaped."""
    return text.translate(_CONTROL)


class UsageError(LayerfsError):
    errno = errno.EINVAL


class ImageError(LayerfsError):
    """The image (a layer, a manifest, an archive) is missing or malformed."""

    errno = errno.EIO


class MountError(LayerfsError):
    """The mount itself cannot be made (mountpoint, /dev/fuse, fusermount3)."""


class LayerError(LayerfsError):
    """A layer directory could not be read."""

    def __init__(self, message: str, err: int = errno.EIO):
        super().__init__(message)
        self.errno = err

    @classmethod
    def from_os_error(cls, layer: "Layer", relpath: bytes, exc: OSError) -> "LayerError":
        where = os.fsdecode(layer.path_of(relpath))
        reason = exc.strerror or str(exc)
        return cls(f"{where}: cannot read layer {layer.describe()}: {reason}", exc.errno or errno.EIO)


def errno_for(exc: BaseException) -> int:
    """The errno a FUSE request answers for this exception.

    Anything not understood is EIO: a handler's bug must fail one request,
    never the daemon.
    """
    err = getattr(exc, "errno", None)
    if isinstance(exc, (OSError, LayerfsError)) and isinstance(err, int) and err > 0:
        return err
    return errno.EIO
