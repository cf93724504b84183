"""Which form an image is in (FORMATS.md section 0), and opening it.

FORMS maps a ``--format`` name to (detector, opener). Detection tries the
forms in table order; the first match wins, as several forms share files.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

from ..errors import ImageError
from . import Image
from .layerdirs import is_layer_dirs, open_layer_dirs

Detector = Callable[[Path], bool]
Opener = Callable[[Path], Image]

FORMS: dict[str, tuple[Detector, Opener]] = {
    "layer-dirs": (is_layer_dirs, open_layer_dirs),
}


def open_image(spec: str, form: str | None = None) -> Image:
    """Open the image at ``spec``, detecting its form unless ``form`` is given."""
    path = Path(spec)
    if not path.exists():
        raise ImageError(f"{spec}: no such image (file or directory)")
    if form is not None:
        if form not in FORMS:
            raise ImageError(f"--format {form}: unknown format; known: {', '.join(FORMS)}")
        return FORMS[form][1](path)
    for detector, opener in FORMS.values():
        if detector(path):
            return opener(path)
    raise ImageError(f"{spec}: not a recognised image (expected one of: {', '.join(FORMS)})")
