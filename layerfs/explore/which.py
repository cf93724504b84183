"""``layerfs which IMAGE PATH...``: the layer that provides each path, the versions it
shadows in lower layers, and the whiteout or opaque directory that hides a hidden path.

JSON schema (``--json``)::

    {"image": str, "form": str,
     "layers": [LAYER, ...],                      # bottom first
     "paths": [{
        "path": "/etc/hosts",                     # os.fsdecode, absolute; resolved
        "asked": "/etc/hosts",                    # as given (differs when a parent is a link)
        "via": [{"link": str, "target": str}],    # symlinked parents followed, in order
        "visible": bool,
        "type": "file|dir|symlink|char|block|fifo|socket" | null,   # of the visible entry
        "provider": LAYER | null,                 # the layer whose entry is shown
        "merged_from": [int, ...],                # directories: 1-based layers merging in
        "hidden_by": HIDER | null,                # hidden paths: what hides the top version
        "versions": [{                            # every layer holding the path, top first
            "layer": int,                         # 1-based
            "state": "provides|merged|shadowed|hidden|whiteout",
            "type": str, "size": int, "mode": "0644", "uid": int, "gid": int,
            "hidden_by": HIDER | null}]}]}
    LAYER = {"index": int, "label": str, "diff_id": str, "chain_id": str, "created_by": str}
    HIDER = {"layer": int, "how": "whiteout|opaque|replaced|shadowed",
             "path": str, "marker": str}
"""

from __future__ import annotations

import os
import stat

from ..errors import LayerfsError
from ..images import Image
from ..index import PathIndex
from ..unpack.digests import short
from .layers import layer_name, layer_ref
from .provenance import PROVIDES, WHITEOUT, Explainer, Hider, Provenance, type_name
from .render import Painter, dumps, json_path, mode_text, one_line, shown_path, table

_STATE_STYLE = {PROVIDES: ("green",), "merged": ("cyan",), "shadowed": ("yellow",),
                "hidden": ("red",), WHITEOUT: ("magenta",)}


MAX_SYMLINKS = 40  # as the kernel's path walk (ELOOP)


def follow_parents(index: PathIndex, path: bytes) -> tuple[bytes, list[tuple[bytes, bytes]]]:
    """``path`` with every symlink among its parents resolved in the merged tree, as a
    path walk through the mount resolves them (``/bin/bash`` on a usr-merged image is
    ``/usr/bin/bash``); the last component is not followed, as lstat does. Also the
    links passed through: ``[(link path, its target), ...]``. Absolute targets stay in
    the image's root; a walk that meets no entry stops there."""
    via: list[tuple[bytes, bytes]] = []
    pending = [part for part in path.split(b"/") if part and part != b"."]
    done: list[bytes] = []
    while pending:
        part = pending.pop(0)
        if part == b"..":
            if done:
                done.pop()
            continue
        candidate = b"/".join(done + [part])
        node = index.resolve(candidate)
        if node is None or not pending or not stat.S_ISLNK(node.mode):
            done.append(part)
            if node is None:
                done += pending
                break
            continue
        if len(via) == MAX_SYMLINKS:
            raise LayerfsError(f"/{os.fsdecode(path)}: too many levels of symbolic links")
        target = index.read_link(node)
        via.append((candidate, target))
        if target.startswith(b"/"):
            done = []
        pending = [p for p in target.split(b"/") if p and p != b"."] + pending
    return b"/".join(done), via


def explain_paths(index: PathIndex, paths: list[bytes]) -> list[Provenance]:
    explainer = Explainer(index)
    results = []
    for path in paths:
        resolved, via = follow_parents(index, path)
        result = explainer.explain(resolved)
        if via:
            result.asked, result.via = path, via
        results.append(result)
    return results


def hider_json(hider: Hider | None) -> dict | None:
    if hider is None:
        return None
    return {"layer": hider.position + 1, "how": hider.how, "path": json_path(hider.path),
            "marker": hider.marker}


def to_json(image: Image, results: list[Provenance]) -> str:
    paths = []
    for result in results:
        node = result.node
        paths.append({
            "path": json_path(result.path),
            "asked": json_path(result.asked if result.via else result.path),
            "via": [{"link": json_path(link), "target": os.fsdecode(target)}
                    for link, target in result.via],
            "visible": node is not None,
            "type": type_name(node.mode) if node is not None else None,
            "provider": layer_ref(image, node.layer) if node is not None else None,
            "merged_from": [p + 1 for p in node.layers] if node is not None and node.is_dir
            else [],
            "hidden_by": hider_json(result.hider),
            "versions": [{
                "layer": v.position + 1, "state": v.state, "type": v.type,
                "size": v.size, "mode": mode_text(v.mode) if v.state != WHITEOUT else None,
                "uid": v.uid, "gid": v.gid, "hidden_by": hider_json(v.hider),
            } for v in result.versions],
        })
    return dumps({"image": image.name, "form": image.form,
                  "layers": [layer_ref(image, p) for p in range(len(image.layers))],
                  "paths": paths})


def describe_hider(image: Image, hider: Hider) -> str:
    where = layer_name(image.layers[hider.position], hider.position)
    if hider.how == "whiteout":
        return f"deleted by {hider.marker} for {shown_path(hider.path)} in layer {where}"
    if hider.how == "opaque":
        return f"under opaque dir {shown_path(hider.path)} ({hider.marker}) in layer {where}"
    if hider.how == "replaced":
        return f"{shown_path(hider.path)} replaced by a {hider.marker} in layer {where}"
    return f"shadowed by the {hider.marker} of layer {where}"


def to_text(image: Image, results: list[Provenance], paint: Painter) -> str:
    blocks = []
    for result in results:
        node = result.node
        head = paint(shown_path(result.path), "bold")
        if node is not None:
            layer = image.layers[node.layer]
            head += f"  {type_name(node.mode)}, from layer {layer_name(layer, node.layer)}"
            if layer.chain_id:
                head += f" chain {short(layer.chain_id)}"
            if layer.created_by:
                head += "\n  " + paint("created by: " + one_line(layer.created_by, 100), "dim")
        elif result.versions:
            hider = result.hider
            head += "  " + paint("hidden", "red")
            if hider is not None:
                head += ": " + describe_hider(image, hider)
                created = image.layers[hider.position].created_by
                if created:
                    head += "\n  " + paint("created by: " + one_line(created, 100), "dim")
        else:
            head += "  " + paint("not in any layer", "red")
        rows, styles = [], []
        for version in result.versions:
            layer = image.layers[version.position]
            note = describe_hider(image, version.hider) if version.hider else ""
            if version.state == WHITEOUT:
                rows.append([str(version.position + 1), short(layer.diff_id) or layer.label,
                             version.state, "-", "-", "-", "-", "deletes it from the layers below"])
            else:
                rows.append([str(version.position + 1), short(layer.diff_id) or layer.label,
                             version.state, version.type, str(version.size),
                             mode_text(version.mode), f"{version.uid}:{version.gid}", note])
            styles.append(_STATE_STYLE.get(version.state))
        text = head
        if result.via:
            links = ", ".join(f"{shown_path(link)} -> {os.fsdecode(target)}"
                              for link, target in result.via)
            text += (f"\n  {shown_path(result.asked)} is {shown_path(result.path)}: "
                     f"through the symlink {links}")
        if rows:
            text += "\n" + table(("LAYER", "DIFFID", "STATE", "TYPE", "SIZE", "MODE", "OWNER",
                                  "WHY"), rows, paint, styles, indent="  ")
        blocks.append(text)
    return "\n\n".join(blocks)
