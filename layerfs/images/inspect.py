"""``layerfs inspect``: an image's layers bottom to top, as a table or JSON.

Works from the image plan alone: cached layers answer from their sidecar,
other tar layers are streamed once (not unpacked), directory layers walked.
"""

from __future__ import annotations

import json

from ..unpack import LayerCache
from ..unpack.digests import short
from ..unpack.survey import survey_blob, survey_dir
from .plan import ImagePlan

COLUMNS = ("#", "DIFFID", "CHAINID", "BLOB", "COMPRESSED", "SIZE", "ENTRIES", "CREATED BY")


def layer_rows(plan: ImagePlan, cache: LayerCache | None, *, survey: bool = True
               ) -> list[dict]:
    """One row per layer; ``survey=False``: tar layers not in the cache are not read
    (a registry's: what the manifest says is all there is)."""
    rows = []
    chains = plan.chain_ids()
    for position, (source, chain) in enumerate(zip(plan.layers, chains, strict=True)):
        row = {"position": position + 1, "diff_id": source.diff_id, "chain_id": chain,
               "blob_digest": source.facts.blob_digest,
               "compressed_size": source.facts.blob_size,
               "size": source.facts.diff_size, "entries": None,
               "created_by": source.created_by}
        cached = cache.find(chain) if cache is not None and chain else None
        if cached is not None:
            info = cached.info()
        elif source.blob is not None:
            info = survey_blob(source.blob, cache.limits if cache is not None else None) \
                if survey else {}
        else:
            info = survey_dir(source.directory or "")
            info.setdefault("diff_size", info.get("file_bytes"))
        row["entries"] = info.get("entries")
        row["size"] = row["size"] if row["size"] is not None else info.get("diff_size")
        row["diff_id"] = row["diff_id"] or info.get("diff_id", "")
        row["blob_digest"] = row["blob_digest"] or info.get("blob_digest", "")
        if row["compressed_size"] is None:
            row["compressed_size"] = info.get("blob_size")
        for key in ("store_path", "cache_id", "store_layer_id", "media_type"):
            if getattr(source.facts, key):
                row[key] = getattr(source.facts, key)
        rows.append(row)
    if not all(chains) and all(row["diff_id"] for row in rows):
        # DiffIDs found only now (pre-1.10 archives): fill the chain
        from ..unpack.digests import chain_ids
        for row, chain in zip(rows, chain_ids([r["diff_id"] for r in rows]), strict=True):
            row["chain_id"] = row["chain_id"] or chain
    return rows


def render_json(plan: ImagePlan, rows: list[dict]) -> str:
    return json.dumps({"name": plan.name, "form": plan.form, "source": plan.source,
                       "layers": rows}, indent=2)


def _size(value: object) -> str:
    if not isinstance(value, int):
        return "-"
    for unit in ("B", "K", "M", "G"):
        if value < 1024 or unit == "G":
            return f"{value}{unit}" if unit == "B" else f"{value:.1f}{unit}"
        value /= 1024  # type: ignore[assignment]
    return str(value)


def render_table(plan: ImagePlan, rows: list[dict]) -> str:
    lines = [f"{plan.name}  ({plan.form}, {len(rows)} layers, bottom first)"]
    table = [COLUMNS] + [(
        str(row["position"]), short(row["diff_id"]) or "-", short(row["chain_id"]) or "-",
        short(row["blob_digest"]) or "-", _size(row["compressed_size"]), _size(row["size"]),
        "-" if row["entries"] is None else str(row["entries"]),
        " ".join(row["created_by"].split())[:60] or "-",
    ) for row in rows]
    widths = [max(len(r[i]) for r in table) for i in range(len(COLUMNS) - 1)]
    for r in table:
        lines.append("  ".join(c.ljust(w) for c, w in zip(r[:-1], widths, strict=True)) + "  " + r[-1])
    return "\n".join(lines)
