"""``layerfs images STORE|LAYOUT|ARCHIVE``: the images a store, layout or archive holds.

The reader of the image's form lists its candidates (as it does when a
reference is missing or unknown: :func:`~layerfs.images.reference.listing`);
each is then read by its ID for its creation time and size. A Docker root
with both image stores lists both.

JSON (``--json``): a list of ``{"names": [NAME:TAG...], "id", "digest",
"created", "size", "layers", "form"}``; ``size`` is the sum of the layers'
sizes as the image records them (uncompressed where known, else the blobs').
"""

from __future__ import annotations

import argparse
import json
import sys

from ..errors import ImageError, LayerfsError
from ..images import transport
from ..images.detect import FORMS, read_image
from ..images.files import open_files
from ..images.plan import ImagePlan
from ..images.reference import Candidate, Listed, listing
from ..sizes import format_size
from .render import Painter, colour_enabled, dumps, table


def _forms(spec: str, form: str | None) -> list[str | None]:
    if form is not None:
        return [form]
    named = transport.parse(spec)
    files = open_files(named.path)
    for name, (detector, _reader) in FORMS.items():
        if named.forms is not None and name not in named.forms:
            continue  # oci:, docker-archive: ... allow only their own forms
        if detector(files):
            return ["containerd", "docker-root"] if name == "docker-root" else [name]
    raise ImageError(f"{spec}: not a recognised image (expected one of: {', '.join(FORMS)})")


def list_images(spec: str, form: str | None = None, platform: str | None = None) -> list[dict]:
    images: list[dict] = []
    forms = _forms(spec, form)
    for name in forms:
        try:
            with listing():
                plan = read_image(spec, name, platform=platform)
            images.append(_entry(plan, None, name))
        except Listed as listed:
            images += [_entry(_read(spec, name, platform, c), c, name) for c in listed.candidates]
        except ImageError:
            if len(forms) == 1:
                raise  # a Docker root's second store may well be empty
    return images


def _read(spec: str, form: str | None, platform: str | None, candidate: Candidate
          ) -> ImagePlan | None:
    """The plan of one listed image, read by its ID (else digest, else name)."""
    refs = [candidate.image_id, *candidate.digests, *candidate.names]
    for ref in (r for r in refs if r):
        try:
            return read_image(spec, form, image_ref=ref, platform=platform)
        except LayerfsError:
            continue
    return None


def _entry(plan: ImagePlan | None, candidate: Candidate | None, form: str | None) -> dict:
    config = plan.config if plan is not None and isinstance(plan.config, dict) else {}
    sizes = [layer.facts.diff_size or layer.facts.blob_size
             for layer in plan.layers] if plan is not None else []
    names = candidate.names if candidate is not None else [plan.name] if plan else []
    image_id = candidate.image_id if candidate is not None and candidate.image_id else ""
    if not image_id and plan is not None and plan.manifest:  # an OCI layout's: the config's
        try:
            image_id = json.loads(plan.manifest)["config"]["digest"]
        except (ValueError, KeyError, TypeError):
            image_id = ""
    return {"names": names, "id": image_id or None,
            "digest": (plan.digest if plan is not None else "") or None,
            "created": config.get("created"),
            "size": sum(sizes) if all(isinstance(s, int) for s in sizes) and plan else None,
            "layers": len(plan.layers) if plan is not None else None,
            "form": plan.form if plan is not None else form}


def to_text(images: list[dict], paint: Painter) -> str:
    rows = []
    for image in images:
        short_id = (image["id"] or "").partition(":")[2][:12] or "-"
        for name in image["names"] or ["<none>"]:
            rows.append((name, short_id, image["created"] or "-", format_size(image["size"]),
                         "-" if image["layers"] is None else str(image["layers"])))
    return table(("IMAGE", "ID", "CREATED", "SIZE", "LAYERS"), rows, paint)


def register(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser(
        "images", help="the images a store, layout or archive holds",
        description="List the images of a Docker or containerd root, a containers-storage "
                    "store, an OCI layout or archive, or a docker save archive: names, image "
                    "ID, creation time, size and layers. A one-image form lists its image.")
    parser.add_argument("image", metavar="STORE|LAYOUT|ARCHIVE")
    parser.add_argument("--format", choices=list(FORMS), help="the form, if not detected")
    parser.add_argument("--platform", metavar="OS/ARCH[/VARIANT]",
                        help="which platform of a multi-arch image to describe")
    parser.add_argument("--json", action="store_true", help="print JSON")
    parser.set_defaults(run=_cmd_images)


def _cmd_images(args: argparse.Namespace) -> int:
    images = list_images(args.image, args.format, args.platform)
    print(dumps(images) if args.json else to_text(images, Painter(colour_enabled(sys.stdout))))
    return 0
