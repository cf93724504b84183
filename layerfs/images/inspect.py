"""``layerfs inspect``: what ``skopeo inspect`` shows of an image, then its layers bottom
to top, as text or JSON; ``--config`` and ``--raw`` print the config and manifest as stored.

Works from the image plan alone: cached layers answer from their sidecar,
other tar layers are streamed once (not unpacked), directory layers walked.
"""

from __future__ import annotations

import json

from ..errors import ImageError
from ..sizes import format_size, plural
from ..tables import render
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


def summary(plan: ImagePlan) -> dict:
    """The image as ``skopeo inspect`` describes it, from its manifest digest and config:
    ``digest``, ``created``, ``architecture``, ``os``, ``variant``, ``env``,
    ``entrypoint``, ``cmd``, ``working_dir``, ``user``, ``labels``, ``exposed_ports``
    (None or empty where the image says nothing)."""
    config = plan.config if isinstance(plan.config, dict) else {}
    run = config.get("config") if isinstance(config.get("config"), dict) else {}
    ports = run.get("ExposedPorts")
    return {
        "digest": plan.digest or None,
        "created": config.get("created"),
        "architecture": config.get("architecture"),
        "os": config.get("os"),
        "variant": config.get("variant"),
        "env": list(run.get("Env") or []),
        "entrypoint": run.get("Entrypoint"),
        "cmd": run.get("Cmd"),
        "working_dir": run.get("WorkingDir") or None,
        "user": run.get("User") or None,
        "labels": dict(run.get("Labels") or {}),
        "exposed_ports": sorted(ports) if isinstance(ports, dict) else [],
    }


def render_json(plan: ImagePlan, rows: list[dict]) -> str:
    return json.dumps({"name": plan.name, "form": plan.form, "source": plan.source,
                       **summary(plan), "layers": rows}, indent=2)


def render_config(plan: ImagePlan) -> str:
    """The image config (``--config``), as skopeo prints it: indented JSON."""
    return json.dumps(plan.config, indent=4)


def raw_manifest(plan: ImagePlan) -> bytes:
    """The manifest exactly as stored (``--raw``); an image form that keeps none
    (docker save, layer dirs) has none to show."""
    if not plan.manifest:
        raise ImageError(f"{plan.source or plan.name}: a {plan.form} image stores no manifest "
                         "(see --config for its config)")
    return plan.manifest


def render_summary(plan: ImagePlan) -> str:
    """``Digest:``, ``Created:``, ... one field a line, as skopeo's field names."""
    info = summary(plan)
    platform = "/".join(str(info[k]) for k in ("os", "architecture", "variant") if info[k])
    fields: list[tuple[str, list[str]]] = [
        ("Digest", [info["digest"] or "-"]),
        ("Created", [info["created"] or "-"]),
        ("Platform", [platform or "-"]),
        ("Env", info["env"]),
        ("Entrypoint", [json.dumps(info["entrypoint"])] if info["entrypoint"] is not None else []),
        ("Cmd", [json.dumps(info["cmd"])] if info["cmd"] is not None else []),
        ("WorkingDir", [info["working_dir"]] if info["working_dir"] else []),
        ("User", [info["user"]] if info["user"] else []),
        ("Labels", [f"{key}={value}" for key, value in sorted(info["labels"].items())]),
        ("ExposedPorts", info["exposed_ports"]),
    ]
    width = max(len(name) for name, _ in fields) + 2
    lines = []
    for name, values in fields:
        for number, value in enumerate(values):
            lines.append((f"{name}:" if number == 0 else "").ljust(width) + value)
    return "\n".join(lines)




def render_table(plan: ImagePlan, rows: list[dict]) -> str:
    table = [(
        str(row["position"]), short(row["diff_id"]) or "-", short(row["chain_id"]) or "-",
        short(row["blob_digest"]) or "-", format_size(row["compressed_size"]), format_size(row["size"]),
        "-" if row["entries"] is None else str(row["entries"]),
        " ".join(row["created_by"].split())[:60] or "-",
    ) for row in rows]
    return "\n".join([f"{plan.name}  ({plan.form}, {plural(len(rows), 'layer')}, bottom first)",
                      render_summary(plan), "", render(COLUMNS, table)])
