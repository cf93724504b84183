"""The OCI distribution API of one repository: manifests and blobs, authenticated.

Requests carry the Authorization header the :class:`~.auth.Authenticator`
knows for the repository's pull scope; a 401 is answered once per new
challenge. Errors name the image reference and what was asked for: a 404 is
:class:`~.errors.NotFoundError`, a 401/403 :class:`~.errors.AuthError`.
"""

from __future__ import annotations

import hashlib
import json

from ..oci.mediatypes import ACCEPT, DOCKER_SCHEMA1, INDEX_TYPES, MANIFEST_TYPES
from ..oci.model import sniff_media_type
from ..oci.resolve import Document
from ..unpack.digests import parse_digest
from .auth import Authenticator, Credentials
from .errors import AuthError, NotFoundError, RegistryError
from .http import HttpClient, Response
from .reference import Reference

MAX_MANIFEST = 4 << 20
MAX_ERROR_BODY = 64 << 10
_AUTH_ROUNDS = 3


Manifest = Document
"""A manifest or index as the registry sent it (bytes, media type, digest)."""


def digest_of(data: bytes, algorithm: str = "sha256") -> str:
    return f"{algorithm}:{hashlib.new(algorithm, data).hexdigest()}"


class RegistryClient:
    def __init__(self, ref: Reference, http: HttpClient,
                 credentials: Credentials | None = None) -> None:
        self.ref = ref
        self.http = http
        self.scope = f"repository:{ref.repository}:pull"
        self.auth = Authenticator(ref, credentials, self._fetch_token)

    # -- the API -------------------------------------------------------------------

    def manifest(self, reference: str) -> Manifest:
        """The manifest or index ``reference`` (a tag or a digest), digest verified."""
        what = f"{self.ref}: manifest {reference}"
        path = f"/v2/{self.ref.repository}/manifests/{reference}"
        with self.request("GET", path, {"Accept": ACCEPT}, what=what) as response:
            data = response.read_all(MAX_MANIFEST)
            content_type = (response.header("Content-Type") or "").split(";")[0].strip()
            header_digest = response.header("Docker-Content-Digest")
        if ":" in reference:
            algorithm, _ = parse_digest(reference, what)
            actual = digest_of(data, algorithm)
            if actual != reference:
                raise RegistryError(f"{what}: digest mismatch: asked for {reference}, "
                                    f"the registry sent {actual}")
            digest = reference
        else:
            digest = digest_of(data)
            if header_digest and header_digest.startswith("sha256:") and header_digest != digest:
                raise RegistryError(f"{what}: digest mismatch: the registry says "
                                    f"{header_digest}, the manifest it sent is {digest}")
        media_type = content_type
        if media_type not in INDEX_TYPES | MANIFEST_TYPES | DOCKER_SCHEMA1:
            media_type = sniff_media_type(data) or media_type
        if media_type in DOCKER_SCHEMA1:
            raise RegistryError(f"{what}: Docker schema 1 manifests are not supported "
                                "(the image is too old; re-push it with a current tool)")
        return Manifest(data, media_type, digest, f"manifest {digest}")

    def blob_bytes(self, digest: str, size: int | None, limit: int, what: str) -> bytes:
        """A small blob (a config, a TOC), read whole and verified."""
        if size is not None and size > limit:
            raise RegistryError(f"{what}: {size} bytes, more than the {limit} allowed")
        with self.open_blob(digest, what=what) as response:
            data = response.read_all(limit)
        algorithm, _ = parse_digest(digest, what)
        actual = digest_of(data, algorithm)
        if actual != digest:
            raise RegistryError(f"{what}: digest mismatch: expected {digest}, "
                                f"the registry sent {actual}")
        return data

    def open_blob(self, digest: str, offset: int = 0, end: int | None = None, *,
                  what: str) -> Response:
        """GET a blob, from ``offset`` (to ``end`` inclusive) when given: 200 or 206."""
        headers = {}
        if offset or end is not None:
            headers["Range"] = f"bytes={offset}-{'' if end is None else end}"
        return self.request("GET", f"/v2/{self.ref.repository}/blobs/{digest}", headers,
                            what=what)

    # -- plumbing ------------------------------------------------------------------

    def request(self, method: str, path: str, headers: dict[str, str] | None = None, *,
                what: str) -> Response:
        url = self.http.url(self.ref.api_host, path)
        headers = dict(headers or {})
        known = self.auth.header(self.scope)
        if known:
            headers["Authorization"] = known
        for _ in range(_AUTH_ROUNDS):
            response = self.http.request(method, url, headers, what=what)
            if response.status != 401:
                break
            challenge = response.header("WWW-Authenticate")
            response.close()
            headers["Authorization"] = self.auth.answer(
                challenge, self.scope, what, previous=headers.get("Authorization"))
        else:
            raise AuthError(f"{what}: authentication failed (401 after {_AUTH_ROUNDS} tries)")
        if response.status >= 400:
            self._fail(response, what)
        return response

    def _fail(self, response: Response, what: str) -> None:
        status = response.status
        detail = _error_detail(response)
        response.close()
        if status == 404:
            raise NotFoundError(f"{what}: not found (404{detail})")
        if status == 403:
            raise AuthError(f"{what}: access denied (403{detail}); {self.auth._who()}")
        raise RegistryError(f"{what}: the registry answered {status} {response.reason}{detail}")

    def _fetch_token(self, url: str, headers: dict[str, str], method: str | None,
                     body: bytes | None) -> tuple[int, bytes]:
        with self.http.request(method or "GET", url, headers, body,
                               what=f"{self.ref}: token server") as response:
            return response.status, response.read_all(MAX_ERROR_BODY * 16)


def _error_detail(response: Response) -> str:
    """`` CODE: message`` from a distribution error body, if it has one."""
    try:
        body = response.read(MAX_ERROR_BODY)
        errors = json.loads(body).get("errors") or []
        first = errors[0]
        return f" {first.get('code', '')}: {first.get('message', '')}".rstrip(": ")
    except Exception:  # noqa: BLE001 - a missing or odd error body only loses detail
        return ""
