"""``layerfs usage``: where an image's bytes go (in the manner of dive's efficiency view).

Each layer is walked once, in full (scan.py through the index), beside the final
merged tree: a layer's regular file is *visible* when the merged tree shows that
very entry, else its bytes are *wasted* (shadowed by a later layer, deleted by a
whiteout or hidden by an opaque directory). A hidden subtree is reported once, at
its top. Hard links count once per layer. Files of equal size found in more than
one layer are hashed (xxhash) to find *duplicates*: the same content shipped by
several layers.

- ``efficiency`` = 1 - (wasted + duplicate bytes) / total bytes (1.0 for no bytes);
  duplicate bytes count only visible copies beyond the first (hidden copies are
  already wasted).
- ``--ci`` checks thresholds and exits 3 when one is crossed.

JSON schema (``--json``)::

    {"image": str, "form": str,
     "total_bytes": int,          # regular-file bytes of all layers
     "visible_bytes": int, "wasted_bytes": int, "wasted_percent": float,
     "duplicate_bytes": int, "efficiency": float,
     "layers": [{"index": int, "label": str, "diff_id": str, "chain_id": str,
                 "created_by": str, "files": int, "bytes": int, "visible_bytes": int,
                 "wasted_bytes": int, "whiteouts": int, "opaque_dirs": int}],   # bottom first
     "offenders": [{"path": str, "wasted_bytes": int,
                    "versions": int,             # layers holding the path (visible one too)
                    "layers": [int],             # layers whose copy is wasted
                    "visible": bool,
                    "hidden_by": HIDER | null}],   # what hides the top-most wasted copy
     "duplicates": [{"size": int, "content": str, "duplicate_bytes": int,
                     "copies": [{"layer": int, "path": str, "visible": bool}]}],
     "ci": {"passed": bool, "rules": [{"rule": str, "threshold": number,
                                       "value": number, "passed": bool}]} | null}
    HIDER = {"layer": int, "how": str, "path": str, "marker": str}   (see ``which``)
"""

from __future__ import annotations

import heapq
import stat
import sys
from dataclasses import dataclass, field

from ..images import Image
from ..index import Node, PathIndex
from ..sizes import format_size, plural
from ..treediff import content_hash
from .layers import layer_name, layer_ref
from .provenance import Explainer
from .render import Painter, dumps, json_path, one_line, shown_path, table
from .which import describe_hider, hider_json

EXIT_THRESHOLD = 3


@dataclass
class LayerUsage:
    position: int
    files: int = 0
    bytes: int = 0
    visible_bytes: int = 0
    wasted_bytes: int = 0
    whiteouts: int = 0
    opaque_dirs: int = 0


@dataclass
class Offender:
    path: bytes
    wasted_bytes: int = 0
    layers: list[int] = field(default_factory=list)
    visible: bool = False


@dataclass
class Copy:
    position: int
    path: bytes
    visible: bool


@dataclass
class Duplicate:
    size: int
    content: str
    copies: list[Copy]

    @property
    def duplicate_bytes(self) -> int:
        visible_layers = {c.position for c in self.copies if c.visible}
        return max(len(visible_layers) - 1, 0) * self.size


@dataclass
class Report:
    layers: list[LayerUsage]
    offenders: list[Offender]
    duplicates: list[Duplicate]

    @property
    def total_bytes(self) -> int:
        return sum(layer.bytes for layer in self.layers)

    @property
    def visible_bytes(self) -> int:
        return sum(layer.visible_bytes for layer in self.layers)

    @property
    def wasted_bytes(self) -> int:
        return sum(layer.wasted_bytes for layer in self.layers)

    @property
    def duplicate_bytes(self) -> int:
        return sum(d.duplicate_bytes for d in self.duplicates)

    @property
    def wasted_percent(self) -> float:
        return 100.0 * self.wasted_bytes / self.total_bytes if self.total_bytes else 0.0

    @property
    def efficiency(self) -> float:
        if not self.total_bytes:
            return 1.0
        return max(0.0, 1.0 - (self.wasted_bytes + self.duplicate_bytes) / self.total_bytes)


class _Progress:
    def __init__(self, total: int) -> None:
        self.total = total
        self.enabled = sys.stderr.isatty()

    def layer(self, position: int) -> None:
        if self.enabled:
            sys.stderr.write(f"\rscanning layer {position + 1}/{self.total} ")
            sys.stderr.flush()

    def done(self) -> None:
        if self.enabled:
            sys.stderr.write("\r\x1b[K")
            sys.stderr.flush()


def measure(index: PathIndex, *, top: int = 10, min_duplicate_size: int = 1) -> Report:
    layers: list[LayerUsage] = []
    offenders: dict[bytes, Offender] = {}
    by_size: dict[int, list[Copy]] = {}
    progress = _Progress(len(index.layers))
    for position in range(len(index.layers)):
        progress.layer(position)
        layers.append(_walk_layer(index, position, offenders, by_size, min_duplicate_size))
    progress.done()
    for offender in offenders.values():
        node = index.resolve(offender.path)
        offender.visible = node is not None and not node.is_dir
    worst = heapq.nlargest(top, offenders.values(), key=lambda o: (o.wasted_bytes, o.path))
    return Report(layers, worst, _duplicates(index, by_size))


def _walk_layer(index: PathIndex, position: int, offenders: dict[bytes, Offender],
                by_size: dict[int, list[Copy]], min_duplicate_size: int) -> LayerUsage:
    usage = LayerUsage(position)
    view = index.views[position]
    seen_inodes: set[tuple[int, int]] = set()
    # (dir path, the merged dir this layer's copy takes part in or None, top of a hidden subtree)
    pending: list[tuple[bytes, Node | None, bytes | None]] = [(b"", index.root, None)]
    while pending:
        reldir, merged, hidden_top = pending.pop()
        listing = view.listing(reldir).listing
        usage.whiteouts += len(listing.whiteouts)
        usage.opaque_dirs += 1 if listing.opaque and reldir else 0
        for name, is_dir in listing.entries.items():
            path = reldir + b"/" + name if reldir else name
            child = merged.children.get(name) if merged is not None and merged.children else None
            if is_dir:
                takes_part = child is not None and child.is_dir and position in child.layers
                pending.append((path, child if takes_part else None,
                                hidden_top if takes_part or hidden_top else path))
                continue
            st = view.stat(path)
            if not stat.S_ISREG(st.st_mode):
                continue
            if st.st_nlink > 1:
                key = (st.st_dev, st.st_ino)
                if key in seen_inodes:
                    continue
                seen_inodes.add(key)
            visible = child is not None and not child.is_dir and child.layer == position
            usage.files += 1
            usage.bytes += st.st_size
            if visible:
                usage.visible_bytes += st.st_size
            else:
                usage.wasted_bytes += st.st_size
                where = hidden_top or path
                offender = offenders.setdefault(where, Offender(where))
                offender.wasted_bytes += st.st_size
                if not offender.layers or offender.layers[-1] != position:
                    offender.layers.append(position)
            if st.st_size >= min_duplicate_size and st.st_size > 0:
                by_size.setdefault(st.st_size, []).append(Copy(position, path, visible))
    return usage


def _duplicates(index: PathIndex, by_size: dict[int, list[Copy]]) -> list[Duplicate]:
    found: list[Duplicate] = []
    for size, copies in by_size.items():
        if len({c.position for c in copies}) < 2:
            continue
        by_content: dict[str, list[Copy]] = {}
        for copy in copies:
            digest = content_hash(index.layers[copy.position].path_of(copy.path))
            by_content.setdefault(digest, []).append(copy)
        for digest, same in by_content.items():
            if len({c.position for c in same}) >= 2:
                found.append(Duplicate(size, digest, same))
    found.sort(key=lambda d: (-d.size * (len(d.copies) - 1), d.content))
    return found


# -- CI thresholds ---------------------------------------------------------------------

@dataclass
class Rule:
    rule: str
    threshold: float
    value: float

    @property
    def passed(self) -> bool:
        if self.rule == "lowest-efficiency":
            return self.value >= self.threshold
        return self.value <= self.threshold


def check(report: Report, *, lowest_efficiency: float | None, highest_wasted_bytes: int | None,
          highest_wasted_percent: float | None) -> list[Rule]:
    rules = []
    if lowest_efficiency is not None:
        rules.append(Rule("lowest-efficiency", lowest_efficiency, round(report.efficiency, 4)))
    if highest_wasted_bytes is not None:
        rules.append(Rule("highest-wasted-bytes", highest_wasted_bytes, report.wasted_bytes))
    if highest_wasted_percent is not None:
        rules.append(Rule("highest-wasted-percent", highest_wasted_percent,
                          round(report.wasted_percent, 2)))
    return rules


# -- output ----------------------------------------------------------------------------

def _explain(index: PathIndex, report: Report) -> dict[bytes, object]:
    explainer = Explainer(index)
    hiders = {}
    for offender in report.offenders:
        hiders[offender.path] = explainer.hider_of(offender.layers[-1], offender.path)
    return hiders


def to_json(image: Image, index: PathIndex, report: Report, rules: list[Rule] | None) -> str:
    hiders = _explain(index, report)
    document = {
        "image": image.name, "form": image.form,
        "total_bytes": report.total_bytes, "visible_bytes": report.visible_bytes,
        "wasted_bytes": report.wasted_bytes, "wasted_percent": round(report.wasted_percent, 2),
        "duplicate_bytes": report.duplicate_bytes, "efficiency": round(report.efficiency, 4),
        "layers": [dict(layer_ref(image, u.position), files=u.files, bytes=u.bytes,
                        visible_bytes=u.visible_bytes, wasted_bytes=u.wasted_bytes,
                        whiteouts=u.whiteouts, opaque_dirs=u.opaque_dirs)
                   for u in report.layers],
        "offenders": [{"path": json_path(o.path), "wasted_bytes": o.wasted_bytes,
                       "versions": len(o.layers) + (1 if o.visible else 0),
                       "layers": [p + 1 for p in o.layers], "visible": o.visible,
                       "hidden_by": hider_json(hiders.get(o.path))}  # type: ignore[arg-type]
                      for o in report.offenders],
        "duplicates": [{"size": d.size, "content": d.content,
                        "duplicate_bytes": d.duplicate_bytes,
                        "copies": [{"layer": c.position + 1, "path": json_path(c.path),
                                    "visible": c.visible} for c in d.copies]}
                       for d in report.duplicates],
        "ci": None if rules is None else {
            "passed": all(r.passed for r in rules),
            "rules": [{"rule": r.rule, "threshold": r.threshold, "value": r.value,
                       "passed": r.passed} for r in rules]},
    }
    return dumps(document)


def to_text(image: Image, index: PathIndex, report: Report, rules: list[Rule] | None,
            paint: Painter, duplicates: int = 10) -> str:
    hiders = _explain(index, report)
    out = [paint(f"{image.name or 'image'}  ({image.form}, {plural(len(image.layers), 'layer')})", "bold")]
    rows = [[str(u.position + 1), layer_name(image.layers[u.position], u.position).split(" ", 1)[-1]
             .strip("()"), str(u.files), format_size(u.bytes), format_size(u.wasted_bytes),
             one_line(image.layers[u.position].created_by, 50) or "-"]
            for u in report.layers]
    out.append(table(("LAYER", "ID", "FILES", "SIZE", "WASTED", "CREATED BY"), rows, paint,
                     [("red",) if u.wasted_bytes else None for u in report.layers]))
    out.append("")
    efficiency_style = "green" if report.efficiency >= 0.9 else "yellow" \
        if report.efficiency >= 0.75 else "red"
    out.append(f"total {format_size(report.total_bytes)}, visible "
               f"{format_size(report.visible_bytes)}, wasted {format_size(report.wasted_bytes)} "
               f"({report.wasted_percent:.1f}%), duplicated "
               f"{format_size(report.duplicate_bytes)}, efficiency "
               + paint(f"{report.efficiency * 100:.1f}%", efficiency_style, "bold"))
    if report.offenders:
        out.append("")
        out.append(paint("top offenders", "bold"))
        rows = []
        for offender in report.offenders:
            hider = hiders.get(offender.path)
            rows.append([format_size(offender.wasted_bytes),
                         ",".join(str(p + 1) for p in offender.layers), shown_path(offender.path),
                         describe_hider(image, hider) if hider else ""])  # type: ignore[arg-type]
        out.append(table(("WASTED", "LAYERS", "PATH", "WHY"), rows, paint))
    if report.duplicates:
        out.append("")
        out.append(paint("duplicated across layers", "bold"))
        rows = [[format_size(d.size), str(len(d.copies)),
                 ", ".join(f"{c.position + 1}:{shown_path(c.path)}" for c in d.copies)]
                for d in report.duplicates[:duplicates]]
        out.append(table(("SIZE", "COPIES", "LAYER:PATH"), rows, paint))
    if rules is not None:
        out.append("")
        for rule in rules:
            verdict = paint("PASS", "green") if rule.passed else paint("FAIL", "red", "bold")
            out.append(f"{verdict}  {rule.rule}: {rule.value} (threshold {rule.threshold})")
        out.append(paint("CI passed" if all(r.passed for r in rules) else "CI failed", "bold"))
    return "\n".join(out)
