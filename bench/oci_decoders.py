"""Which decoder for layerfs.oci: the hand decoder against msgspec, measured.

Two measures (issue 14): the hostile corpus the fuzz tests use (documents
drawn from ``tests/fuzz/strategies.py``: random JSON and mutated valid
manifests / indexes, plus the stored regressions), and a big index (50,000
entries with platforms and annotations). For each decoder: time, and on the
corpus how often it agrees with the rules layerfs keeps (tests/hostile:
``"manifests": null`` is empty, a non-object index entry is skipped, a
``platform`` that is not an object is harmless) and whether its errors name
the field path. msgspec is optional: ``pip install msgspec`` to compare.

    .venv/bin/python -m bench.oci_decoders [--examples N] [--entries N]
"""

from __future__ import annotations

import argparse
import json
import time
from typing import Annotated

from hypothesis import given, settings
from hypothesis import strategies as st

from layerfs.errors import ImageError
from layerfs.oci.model import ImageManifest, Index
from tests.fuzz.strategies import JSON, mutated

DIGEST = "sha256:" + "a" * 64
VALID_MANIFEST = {"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
                  "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                             "digest": DIGEST, "size": 10},
                  "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
                              "digest": DIGEST, "size": 20}]}
VALID_INDEX = {"schemaVersion": 2, "manifests": [
    {"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": DIGEST, "size": 5,
     "platform": {"os": "linux", "architecture": "amd64"},
     "annotations": {"org.opencontainers.image.ref.name": "v1"}}]}


def corpus(examples: int) -> list[tuple[str, object]]:
    found: list[tuple[str, object]] = []

    @settings(max_examples=examples, deadline=None, database=None, derandomize=True)
    @given(kind=st.sampled_from(["manifest", "index"]), raw=JSON,
           near=st.one_of(mutated(VALID_MANIFEST), mutated(VALID_INDEX)),
           use_near=st.booleans())
    def collect(kind: str, raw: object, near: object, use_near: bool) -> None:
        document = near if use_near else raw
        if use_near:
            kind = "index" if isinstance(document, dict) and "manifests" in document \
                else "manifest"
        found.append((kind, document))
    collect()
    return found


def hand(kind: str, document: object) -> str | None:
    try:
        (Index if kind == "index" else ImageManifest).decode(document, "doc")
        return None
    except ImageError as exc:
        return str(exc)


try:
    import msgspec
    from msgspec import Meta
except ImportError:  # the comparison is optional
    msgspec = None
else:
    SpecDigest = Annotated[str, Meta(pattern=r"^(sha256:[0-9a-f]{64}|sha512:[0-9a-f]{128})$")]

    class SpecPlatform(msgspec.Struct):
        os: str = ""
        architecture: str = ""
        variant: str = ""

    class SpecDescriptor(msgspec.Struct, rename="camel"):
        digest: SpecDigest
        media_type: str = ""
        size: Annotated[int, Meta(ge=0)] | None = None
        annotations: dict[str, str] = {}
        platform: SpecPlatform | None = None

    class SpecIndex(msgspec.Struct):
        manifests: list[SpecDescriptor] | None = None

    class SpecManifest(msgspec.Struct):
        config: SpecDescriptor
        layers: list[SpecDescriptor]


def with_msgspec(msgspec, types, kind: str, document: object) -> str | None:  # noqa: ANN001
    try:
        msgspec.convert(document, types[kind])
        return None
    except msgspec.ValidationError as exc:
        return str(exc)


def timed(function, items) -> tuple[float, list]:  # noqa: ANN001
    start = time.perf_counter()
    results = [function(*item) for item in items]
    return time.perf_counter() - start, results


def big_index(entries: int) -> bytes:
    manifests = [{"mediaType": "application/vnd.oci.image.manifest.v1+json",
                  "digest": "sha256:" + f"{n:064x}", "size": 1000 + n,
                  "platform": {"os": "linux", "architecture": ["amd64", "arm64"][n % 2]},
                  "annotations": {"org.opencontainers.image.ref.name": f"tag{n}"}}
                 for n in range(entries)]
    return json.dumps({"schemaVersion": 2, "manifests": manifests}).encode()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--examples", type=int, default=3000)
    parser.add_argument("--entries", type=int, default=50000)
    args = parser.parse_args()
    documents = corpus(args.examples)
    hand_time, hand_results = timed(hand, documents)
    report: dict = {"corpus": len(documents),
                    "hand": {"seconds": round(hand_time, 4),
                             "rejected": sum(r is not None for r in hand_results),
                             "errors_with_path": sum(r is not None and "(at " in r
                                                     for r in hand_results)}}
    data = big_index(args.entries)
    start = time.perf_counter()
    Index.decode(json.loads(data), "index.json")
    report["big_index"] = {"entries": args.entries, "bytes": len(data),
                           "hand_json_loads_and_decode_s": round(time.perf_counter() - start, 4)}
    if msgspec is None:
        print(json.dumps(report, indent=2))
        return
    types = {"index": SpecIndex, "manifest": SpecManifest}
    spec_time, spec_results = timed(lambda k, d: with_msgspec(msgspec, types, k, d), documents)
    stricter = [(k, d, s) for (k, d), h, s in zip(documents, hand_results, spec_results,
                                                   strict=True) if h is None and s is not None]
    laxer = [(k, d, h) for (k, d), h, s in zip(documents, hand_results, spec_results,
                                                strict=True) if h is not None and s is None]
    report["msgspec"] = {"version": msgspec.__version__, "seconds": round(spec_time, 4),
                         "rejected": sum(r is not None for r in spec_results),
                         "errors_with_path": sum(r is not None and "at `$" in r
                                                 for r in spec_results),
                         "rejects_what_layerfs_accepts": len(stricter),
                         "accepts_what_layerfs_rejects": len(laxer),
                         "example_stricter": stricter[0][2] if stricter else "",
                         "example_laxer": laxer[0][2] if laxer else ""}
    start = time.perf_counter()
    msgspec.json.decode(data, type=types["index"])
    report["big_index"]["msgspec_json_decode_typed_s"] = round(time.perf_counter() - start, 4)
    start = time.perf_counter()
    msgspec.convert(json.loads(data), types["index"])
    report["big_index"]["json_loads_and_msgspec_convert_s"] = round(
        time.perf_counter() - start, 4)
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
