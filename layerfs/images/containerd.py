"""containerd's image store with the overlayfs snapshotter, used in place (FORMATS.md section 7).

Root: ``/var/lib/containerd``, or ``<docker root>/containerd/daemon`` when
dockerd runs its own containerd (Docker's namespace is ``moby``)::

    io.containerd.metadata.v1.bolt/meta.db        v1/<ns>/images/<name>/target/{digest,mediatype,size}
                                                  v1/<ns>/snapshots/overlayfs/<chainID>/name -> backend key
    io.containerd.content.v1.content/blobs/...     index, manifest, config and layer blobs
    io.containerd.snapshotter.v1.overlayfs/metadata.db   v1/snapshots/<backend key>/{id,kind,parent}
    io.containerd.snapshotter.v1.overlayfs/snapshots/<id>/fs   the layer, overlay-native

An image: its target (an index or a manifest, platform chosen as for OCI
layouts) -> config -> DiffIDs -> ChainIDs, which are the image-layer snapshot
names of its namespace -> the snapshotter's numeric id -> ``snapshots/<id>/fs``.
Both databases are bbolt files read with :mod:`layerfs.images.bbolt`, without
locking and safely while containerd runs.

References are matched as in the other stores: name (``docker.io/library/x:tag``
or short forms), digest of the target, short or full ID (the target digest, as
``docker images`` shows for the containerd store, or the config digest). A plain
containerd root is searched in all its namespaces; ``NAMESPACE/REF`` looks in
one (the listing of a store with several namespaces shows names that way).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from ..errors import ImageError
from ..layer import LayerFacts
from ..oci.layout import read_blob
from ..oci.model import Descriptor
from ..oci.platform import host_platform
from ..oci.resolve import Document, Fetch, follow, resolve
from ..unpack.digests import chain_ids
from .bbolt import BoltFile, Bucket, read_consistent, uvarint
from .files import ImageFiles, open_files
from .plan import ImagePlan, LayerSource, layer_label
from .reference import Candidate, select

METADATA_DB = "io.containerd.metadata.v1.bolt/meta.db"
CONTENT_DIR = "io.containerd.content.v1.content"
SNAPSHOTTER_DIR = "io.containerd.snapshotter.v1.overlayfs"
SNAPSHOTTER = b"overlayfs"
DOCKER_DAEMON_DIR = "containerd/daemon"
DOCKER_NAMESPACE = "moby"
DANGLING_PREFIX = "moby-dangling@"
KIND_COMMITTED = 3
_KINDS = {0: "unknown", 1: "view", 2: "active", 3: "committed"}


def _is_store(files: ImageFiles, under: str = "") -> bool:
    prefix = f"{under}/" if under else ""
    return files.is_dir(prefix + SNAPSHOTTER_DIR) and files.exists(prefix + METADATA_DB)


def store_of(files: ImageFiles) -> tuple[Path, str | None] | None:
    """(containerd root, namespace or None for all) of a containerd root or a Docker root."""
    if files.is_archive:
        return None
    if _is_store(files):
        return files.path, None
    if _is_store(files, DOCKER_DAEMON_DIR):
        return files.path / DOCKER_DAEMON_DIR, DOCKER_NAMESPACE
    return None


def is_containerd(files: ImageFiles) -> bool:
    return store_of(files) is not None


@dataclass
class _Record:
    namespace: str
    name: str
    target: dict
    config_digest: str = ""
    tags: list[str] = field(default_factory=list)
    """The names of all records of this namespace with this target (dangling ones left out)."""


def _text(value: bytes | None) -> str:
    return value.decode("utf-8", "surrogateescape") if value else ""


def _records(db: BoltFile, namespace: str | None) -> list[_Record]:
    version = db.root().bucket(b"v1")
    if version is None:
        raise db.corrupt("no 'v1' bucket: not containerd metadata")
    records = []
    for ns_key, ns_bucket in version.buckets():
        ns = _text(ns_key)
        if namespace is not None and ns != namespace:
            continue
        images = ns_bucket.bucket(b"images")
        for name_key, image in images.buckets() if images is not None else ():
            target = image.bucket(b"target")
            if target is None:
                continue
            descriptor: dict = {"digest": _text(target.value(b"digest")),
                                "mediaType": _text(target.value(b"mediatype"))}
            size = target.value(b"size")
            if size:
                descriptor["size"] = uvarint(size, f"{db.path}: size of image {name_key!r}")
            records.append(_Record(ns, _text(name_key), descriptor))
    return records


def _choose(candidates: list[Candidate[_Record]], ref: str | None,
            where: str) -> Candidate[_Record]:
    """The image ``ref`` names: read plainly first (``layerfs/test:latest`` is a name even
    when a namespace is called ``layerfs``), else as ``NAMESPACE/REF`` (a short name or
    ID in one namespace); when neither names one, the plain reading's error."""
    try:
        return select(candidates, ref, where)
    except ImageError as plain_error:
        first, slash, rest = (ref or "").partition("/")
        in_namespace = [c for c in candidates if c.item.namespace == first]
        if not (slash and rest and in_namespace):
            raise
        try:
            return select(in_namespace, rest, f"{where} namespace {first}")
        except ImageError:
            raise plain_error from None


def _candidates(records: list[_Record], content: ImageFiles, platform: str, *,
                qualify: bool = False) -> list[Candidate[_Record]]:
    """One candidate per namespace and target: tags of one image are one image, as in Docker.
    Names are also given as NAMESPACE/NAME when the store has several namespaces or
    ``qualify`` (a containerd root, whose listing names the namespace)."""
    namespaces = {record.namespace for record in records}
    by_target: dict[tuple[str, str], Candidate[_Record]] = {}
    for record in records:
        digest = record.target.get("digest", "")
        candidate = by_target.get((record.namespace, digest))
        if candidate is None:
            record.config_digest = _config_digest(content, record.target, platform)
            digests = [digest] + ([record.config_digest] if record.config_digest else [])
            candidate = by_target[record.namespace, digest] = Candidate(
                record, image_id=digest, digests=digests)
        if not record.name.startswith(DANGLING_PREFIX):
            candidate.item.tags.append(record.name)
            if len(namespaces) > 1 or qualify:
                candidate.names.append(f"{record.namespace}/{record.name}")
            candidate.names.append(record.name)
    return list(by_target.values())


def _config_digest(content: ImageFiles, target: dict, platform: str) -> str:
    """The config digest of an image, to match short image IDs; "" when it cannot be read."""
    try:
        fetch = _fetcher(content)
        return follow(_target(content, target, fetch), fetch, platform,
                      content.where).manifest.config.digest
    except ImageError:
        return ""


def _fetcher(content: ImageFiles) -> Fetch:
    return lambda descriptor, what: read_blob(content, descriptor, what)


def _target(content: ImageFiles, target: dict, fetch: Fetch) -> Document:
    """The manifest or index an image record names."""
    return fetch(Descriptor.decode(target, f"{content.where}: image target"), "manifest")


def read_containerd(files: ImageFiles, ref: str | None, platform: str | None) -> ImagePlan:
    found = store_of(files)
    if found is None:
        raise ImageError(f"{files.where}: not a containerd store (no {SNAPSHOTTER_DIR} and "
                         f"{METADATA_DB}, nor under {DOCKER_DAEMON_DIR})")
    root, namespace = found
    wanted_platform = platform or host_platform()
    meta_db = root / METADATA_DB
    records = read_consistent(meta_db, lambda db: _records(db, namespace),
                              what="containerd metadata database")
    if not (root / CONTENT_DIR).is_dir():
        raise ImageError(f"{root / CONTENT_DIR}: the content store is missing")
    content = open_files(root / CONTENT_DIR)
    where = files.where + (f" (containerd namespace {namespace})" if namespace else "")
    candidates = _candidates(records, content, wanted_platform, qualify=namespace is None)
    chosen = _choose(candidates, ref, where).item
    fetch = _fetcher(content)
    image = resolve(_target(content, chosen.target, fetch), fetch, wanted_platform, content.where)
    descriptors = image.manifest.layers
    diff_ids = list(image.config.diff_ids)
    chains = chain_ids(diff_ids)
    backend_keys = read_consistent(
        meta_db, lambda db: _backend_keys(db, chosen.namespace, chains),
        what="containerd metadata database")
    snapshot_ids = read_consistent(
        root / SNAPSHOTTER_DIR / "metadata.db", lambda db: _snapshot_ids(db, backend_keys),
        what="overlayfs snapshotter database")
    history = image.config.created_by
    name = chosen.tags[0] if chosen.tags else chosen.target.get("digest", "")
    layers = []
    for position, (diff_id, chain) in enumerate(zip(diff_ids, chains, strict=True)):
        label = f"layer {position + 1} (chain {chain})"
        if backend_keys[position] is None:
            raise ImageError(f"{root}: {label} of {name} is not unpacked in the "
                             f"overlayfs snapshotter of namespace {chosen.namespace} "
                             "(unpack it with 'ctr image unpack' or pull it again)")
        snapshot_id = snapshot_ids[position]
        directory = root / SNAPSHOTTER_DIR / "snapshots" / str(snapshot_id) / "fs"
        if not directory.is_dir():
            raise ImageError(f"{directory}: {label} directory is missing")
        descriptor = descriptors[position]
        facts = LayerFacts(store_layer_id=str(snapshot_id), store_path=str(directory),
                           snapshot_key=backend_keys[position] or "",
                           blob_digest=descriptor.digest, blob_size=descriptor.size,
                           media_type=descriptor.media_type)
        layers.append(LayerSource(label=layer_label(position, diff_id), diff_id=diff_id,
                                  created_by=history[position], directory=str(directory),
                                  chain_id=chain, facts=facts))
    return ImagePlan(layers=layers, name=name, form="containerd", config=dict(image.config.raw),
                     source=str(root), digest=image.document.digest,
                     manifest=image.document.data)


def _backend_keys(db: BoltFile, namespace: str, chains: list[str]) -> list[str | None]:
    """The snapshotter's key of each layer snapshot (None where it is not unpacked)."""
    snapshots = db.root().bucket(b"v1", namespace.encode("utf-8", "surrogateescape"),
                                 b"snapshots", SNAPSHOTTER)
    keys: list[str | None] = []
    for chain in chains:
        entry = snapshots.get(chain.encode()) if snapshots is not None else None
        name = entry.value(b"name") if isinstance(entry, Bucket) else None
        keys.append(_text(name) if name else None)
        if keys[-1] is None:  # the layers above need this one
            keys.extend([None] * (len(chains) - len(keys)))
            break
    return keys


def _snapshot_ids(db: BoltFile, backend_keys: list[str | None]) -> list[int | None]:
    snapshots = db.root().bucket(b"v1", b"snapshots")
    if snapshots is None:
        raise db.corrupt("no 'v1/snapshots' bucket: not a containerd snapshotter database")
    ids: list[int | None] = []
    for key in backend_keys:
        if key is None:
            ids.append(None)
            continue
        entry = snapshots.get(key.encode("utf-8", "surrogateescape"))
        raw_id = entry.value(b"id") if isinstance(entry, Bucket) else None
        if raw_id is None:
            raise ImageError(f"{db.path}: snapshot {key} is not in the snapshotter database "
                             "(deleted while reading?)")
        kind_raw = entry.value(b"kind") if isinstance(entry, Bucket) else None
        kind = kind_raw[0] if kind_raw else 0
        if kind != KIND_COMMITTED:
            raise ImageError(f"{db.path}: snapshot {key} is {_KINDS.get(kind, kind)}, "
                             "not a committed image layer")
        ids.append(uvarint(raw_id, f"{db.path}: id of snapshot {key}"))
    return ids


def image_count(files: ImageFiles) -> int:
    """How many images the containerd store of ``files`` holds (0 when there is none)."""
    found = store_of(files)
    if found is None:
        return 0
    root, namespace = found
    records = read_consistent(root / METADATA_DB, lambda db: _records(db, namespace),
                              what="containerd metadata database")
    return len(records)
