"""Pushing an image whose layers stay uncompressed (skopeo compresses every layer it
pushes to a registry): the blobs and manifest of a skopeo ``dir:`` copy, uploaded with
the distribution API's monolithic upload."""

from __future__ import annotations

import http.client
import json
import subprocess
import urllib.parse
from pathlib import Path


def decompressed_copy(layout: Path, tag: str, target: Path) -> Path:
    subprocess.run(["skopeo", "copy", "--quiet", "--dest-decompress", f"oci:{layout}:{tag}",
                    f"dir:{target}"], check=True, capture_output=True, timeout=300)
    return target


def upload_dir(host: str, repository: str, tag: str, directory: Path) -> dict:
    manifest_bytes = (directory / "manifest.json").read_bytes()
    manifest = json.loads(manifest_bytes)
    for descriptor in [manifest["config"], *manifest["layers"]]:
        data = (directory / descriptor["digest"].partition(":")[2]).read_bytes()
        _request(host, "POST", f"/v2/{repository}/blobs/uploads/", b"", {}, 202, upload=data,
                 digest=descriptor["digest"])
    _request(host, "PUT", f"/v2/{repository}/manifests/{tag}", manifest_bytes,
             {"Content-Type": manifest.get("mediaType",
                                                  "application/vnd.oci.image.manifest.v1+json")}, 201)
    return manifest


def _request(host: str, method: str, path: str, body: bytes, headers: dict, expect: int, *,
             upload: bytes | None = None, digest: str = "") -> None:
    conn = http.client.HTTPConnection(host, timeout=60)
    try:
        conn.request(method, path, body=body, headers=headers)
        response = conn.getresponse()
        response.read()
        assert response.status == expect, (method, path, response.status)
        if upload is None:
            return
        location = urllib.parse.urlsplit(response.getheader("Location"))
        query = location.query + ("&" if location.query else "") + \
            urllib.parse.urlencode({"digest": digest})
        conn.request("PUT", f"{location.path}?{query}", body=upload,
                     headers={"Content-Type": "application/octet-stream"})
        response = conn.getresponse()
        response.read()
        assert response.status == 201, ("PUT blob", response.status)
    finally:
        conn.close()


def upload_image(host: str, repository: str, tag: str, config: bytes,
                 layers: list[tuple[bytes, str, dict]]) -> dict:
    """Upload a config and layer blobs (data, media type, annotations) and their manifest."""
    import hashlib

    def descriptor(data: bytes, media_type: str, annotations: dict | None = None) -> dict:
        digest = "sha256:" + hashlib.sha256(data).hexdigest()
        _request(host, "POST", f"/v2/{repository}/blobs/uploads/", b"", {}, 202, upload=data,
                 digest=digest)
        result = {"mediaType": media_type, "digest": digest, "size": len(data)}
        if annotations:
            result["annotations"] = annotations
        return result

    manifest = {"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
                "config": descriptor(config, "application/vnd.oci.image.config.v1+json"),
                "layers": [descriptor(*layer) for layer in layers]}
    _request(host, "PUT", f"/v2/{repository}/manifests/{tag}", json.dumps(manifest).encode(),
             {"Content-Type": manifest["mediaType"]}, 201)
    return manifest
