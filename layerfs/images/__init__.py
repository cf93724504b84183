"""Image sources: each form an image sits in on disk becomes one ordered list of layers.

A source module knows one form (extracted layer dirs, OCI layout, docker
archive, Docker data root, containers-storage, ...) and returns an
:class:`Image`. :func:`open_image` detects the form (FORMATS.md section 0)
or takes the one forced with ``--format``. Adding a form touches its own
module and the table in :mod:`layerfs.images.detect`. Only local forms are
read here: a registry image (``docker://``) is :mod:`layerfs.registry`'s, and
:mod:`layerfs.mountplan` chooses between the two.
"""

from __future__ import annotations

from .detect import FORMS, open_image, read_image
from .image import Image

__all__ = ["FORMS", "Image", "open_image", "read_image"]
