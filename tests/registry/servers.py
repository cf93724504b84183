"""Real servers on loopback for the registry tests, each stopped when its block ends.

- :class:`RegistryServer`: Debian's ``docker-registry`` (distribution v2) with a
  temporary config and storage dir, optionally behind htpasswd or token auth;
- :class:`TokenServer`: a bearer-token issuer for the registry's ``auth.token``
  (RS256 JWTs with an ``x5c`` header, signed by ``openssl``);
- :class:`FaultProxy`: a forwarding HTTP proxy that can answer chosen requests
  with an error once (with a Retry-After), redirect blobs, throttle or hold bodies, and
  logs every request with its Range, Authorization and time;
- :class:`BlobStore`: blob storage on another origin, for the redirects.

Every loop here is bounded in count and time; only 127.0.0.1 is used.
"""

from __future__ import annotations

import base64
import hashlib
import http.client
import json
import os
import shutil
import socket
import subprocess
import threading
import time
import urllib.parse
import uuid
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Callable, Self

REGISTRY_BINARY = shutil.which("docker-registry") or shutil.which("registry")
START_TIMEOUT = 20.0
HOLD_LIMIT = 120.0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for_port(port: int, timeout: float = START_TIMEOUT,
                  process: subprocess.Popen | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"server exited with {process.returncode} before listening")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return
        except OSError:
            time.sleep(0.05)
    raise TimeoutError(f"nothing listens on 127.0.0.1:{port} after {timeout}s")


class LoopbackHTTPServer:
    """An HTTP server on a free 127.0.0.1 port, serving from a thread while entered."""

    port: int

    def _make_server(self, handler: type[BaseHTTPRequestHandler]) -> None:
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self._server.daemon_threads = True
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def __enter__(self) -> Self:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=10)


def send_json(handler: BaseHTTPRequestHandler, status: int, body: dict,
              headers: dict[str, str] | None = None) -> None:
    """Answer a request with ``body`` as JSON."""
    data = json.dumps(body).encode()
    handler.send_response(status)
    handler.send_header("Content-Type", "application/json")
    for key, value in (headers or {}).items():
        handler.send_header(key, value)
    handler.send_header("Content-Length", str(len(data)))
    handler.end_headers()
    handler.wfile.write(data)


# -- the registry ------------------------------------------------------------------------

class RegistryServer:
    """docker-registry serving ``storage`` on 127.0.0.1:``port``."""

    def __init__(self, workdir: Path, *, htpasswd: dict[str, str] | None = None,
                 token: "TokenServer | None" = None, tls: bool = False) -> None:
        if REGISTRY_BINARY is None:
            raise RuntimeError("docker-registry is not installed")
        self.workdir = workdir
        self.storage = workdir / "storage"
        self.port = free_port()
        self.process: subprocess.Popen | None = None
        self.config = workdir / "config.yml"
        self.log = workdir / "registry.log"
        lines = ["version: 0.1", "log:", "  level: warn", "  accesslog:", "    disabled: true",
                 "storage:", "  filesystem:", f"    rootdirectory: {self.storage}",
                 "  delete:", "    enabled: true", "http:", f"  addr: 127.0.0.1:{self.port}",
                 "  secret: layerfs-tests"]
        self.certificate: Path | None = None
        if tls:  # a self-signed certificate for 127.0.0.1, also its own CA
            self.certificate, key = workdir / "registry.crt", workdir / "registry.key"
            subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes",
                            "-keyout", str(key), "-out", str(self.certificate), "-days", "2",
                            "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1"],
                           check=True, capture_output=True)
            lines += ["  tls:", f"    certificate: {self.certificate}", f"    key: {key}"]
        if htpasswd:
            path = workdir / "htpasswd"
            path.write_text("".join(_htpasswd_line(u, p) for u, p in htpasswd.items()))
            lines += ["auth:", "  htpasswd:", "    realm: layerfs-tests", f"    path: {path}"]
        elif token is not None:
            lines += ["auth:", "  token:", f"    realm: {token.realm}",
                      f"    service: {token.service}", f"    issuer: {token.issuer}",
                      f"    rootcertbundle: {token.cert}"]
        self.config.write_text("\n".join(lines) + "\n")

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self) -> "RegistryServer":
        log = open(self.log, "ab")
        self.process = subprocess.Popen([REGISTRY_BINARY, "serve", str(self.config)],
                                        stdout=log, stderr=log, stdin=subprocess.DEVNULL)
        log.close()
        try:
            wait_for_port(self.port, process=self.process)
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        process, self.process = self.process, None
        if process is None or process.poll() is not None:
            return
        process.kill()  # as abrupt as a crash: in-flight responses are cut
        process.wait(timeout=10)

    def blob_path(self, digest: str) -> Path:
        hex_digest = digest.partition(":")[2]
        return (self.storage / "docker/registry/v2/blobs/sha256" / hex_digest[:2] / hex_digest
                / "data")

    def __enter__(self) -> "RegistryServer":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _htpasswd_line(user: str, password: str) -> str:
    result = subprocess.run(["htpasswd", "-nbB", user, password], capture_output=True,
                            text=True, check=True)
    return result.stdout.strip() + "\n"


# -- the token server ----------------------------------------------------------------------

def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


class TokenServer(LoopbackHTTPServer):
    """Issues pull tokens: to ``users`` (Basic auth) for every repository, and to
    anonymous clients for the repositories in ``public``."""

    def __init__(self, workdir: Path, users: dict[str, str], public: set[str] = frozenset()):
        self.users = users
        self.public = set(public)
        self.service = "layerfs-test-registry"
        self.issuer = "layerfs-test-issuer"
        self.key = workdir / "token.key"
        self.cert = workdir / "token.crt"
        subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout",
                        str(self.key), "-out", str(self.cert), "-days", "2", "-subj",
                        "/CN=layerfs-test-token"], check=True, capture_output=True)
        der = subprocess.run(["openssl", "x509", "-in", str(self.cert), "-outform", "DER"],
                             check=True, capture_output=True).stdout
        self.x5c = base64.b64encode(der).decode()
        self.requests: list[dict] = []
        self.refresh_tokens: dict[str, str] = {}
        """Identity (refresh) token -> user, for the OAuth2 POST flow."""
        self._make_server(self._handler())

    @property
    def realm(self) -> str:
        return f"http://127.0.0.1:{self.port}/token"

    def token(self, subject: str, access: list[dict]) -> str:
        now = int(time.time())
        header = {"typ": "JWT", "alg": "RS256", "x5c": [self.x5c]}
        claims = {"iss": self.issuer, "sub": subject, "aud": self.service, "exp": now + 300,
                  "nbf": now - 10, "iat": now, "jti": uuid.uuid4().hex, "access": access}
        signing_input = f"{_b64url(json.dumps(header).encode())}." \
                        f"{_b64url(json.dumps(claims).encode())}"
        signature = subprocess.run(["openssl", "dgst", "-sha256", "-sign", str(self.key)],
                                   input=signing_input.encode(), check=True,
                                   capture_output=True).stdout
        return f"{signing_input}.{_b64url(signature)}"

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def do_GET(self) -> None:
                query = urllib.parse.parse_qs(urllib.parse.urlsplit(self.path).query)
                user = None
                header = self.headers.get("Authorization", "")
                if header.startswith("Basic "):
                    name, _, password = base64.b64decode(header[6:]).decode().partition(":")
                    if server.users.get(name) != password:
                        return self._answer(401, {"details": "bad credentials"})
                    user = name
                server.requests.append({"user": user, "scope": query.get("scope", []),
                                        "service": query.get("service", [])})
                access = []
                for scope in query.get("scope", []):
                    kind, _, rest = scope.partition(":")
                    name, _, actions = rest.rpartition(":")
                    if kind == "repository" and (user or name in server.public):
                        access.append({"type": "repository", "name": name,
                                       "actions": [a for a in actions.split(",") if a]})
                token = server.token(user or "", access)
                self._answer(200, {"token": token, "expires_in": 300})

            def do_POST(self) -> None:  # OAuth2 refresh-token grant (identity tokens)
                length = int(self.headers.get("Content-Length") or 0)
                form = urllib.parse.parse_qs(self.rfile.read(length).decode())
                user = server.refresh_tokens.get((form.get("refresh_token") or [""])[0])
                if form.get("grant_type") != ["refresh_token"] or user is None:
                    return self._answer(401, {"details": "bad refresh token"})
                scopes = (form.get("scope") or [""])[0].split()
                server.requests.append({"user": user, "scope": scopes, "grant": "refresh"})
                access = [{"type": "repository", "name": scope.split(":")[1],
                           "actions": scope.split(":")[2].split(",")} for scope in scopes]
                self._answer(200, {"access_token": server.token(user, access),
                                   "expires_in": 300})

            def _answer(self, status: int, body: dict) -> None:
                send_json(self, status, body)

        return Handler


# -- the fault-injecting proxy ----------------------------------------------------------------

@dataclass
class Fault:
    """Answer requests whose path contains ``path_part`` with ``status``, ``times`` times."""
    path_part: str
    status: int
    times: int = 1
    method: str = "GET"
    retry_after: str | None = None
    """The Retry-After header of the answer, if any."""


@dataclass
class LoggedRequest:
    method: str
    path: str
    range: str | None
    status: int = 0
    sent: int = 0
    authorization: str | None = None
    at: float = field(default_factory=time.monotonic)


@dataclass
class FaultProxy(LoopbackHTTPServer):
    upstream_port: int
    faults: list[Fault] = field(default_factory=list)
    rate: float | None = None
    """Bytes per second for blob bodies (None: as fast as possible)."""
    log: list[LoggedRequest] = field(default_factory=list)
    max_concurrent_blobs: int = 0
    on_blob_bytes: Callable[[int], None] | None = None
    held: list[str] = field(default_factory=list)
    """Path parts of blob requests held (logged, not yet forwarded) until ``release``
    is set, at most ``HOLD_LIMIT`` seconds: a download asked for, not yet answered."""
    release: threading.Event = field(default_factory=threading.Event)
    redirect_blobs: str | None = None
    """A base URL (a :class:`BlobStore`) that blob GETs are redirected to with a 307, as
    registries do to their storage or CDN."""

    def __post_init__(self) -> None:
        self._lock = threading.Lock()
        self._active_blobs = 0
        self._make_server(self._handler())

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self.port}"

    def blob_requests(self, digest: str) -> list[LoggedRequest]:
        return [r for r in self.log if r.path.endswith(f"/blobs/{digest}")]

    def _fault_for(self, method: str, path: str) -> Fault | None:
        with self._lock:
            for fault in self.faults:
                if fault.times > 0 and fault.method == method and fault.path_part in path:
                    fault.times -= 1
                    return fault
        return None

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            disable_nagle_algorithm = True  # no delayed-ACK stalls between small writes

            def log_message(self, *args: object) -> None:
                pass

            def do_GET(self) -> None:
                self._forward()

            def do_HEAD(self) -> None:
                self._forward()

            def _forward(self) -> None:
                entry = LoggedRequest(self.command, self.path, self.headers.get("Range"),
                                      authorization=self.headers.get("Authorization"))
                with proxy._lock:
                    proxy.log.append(entry)
                fault = proxy._fault_for(self.command, self.path)
                if fault is not None:
                    entry.status = fault.status
                    send_json(self, fault.status, {"errors": [
                        {"code": "INJECTED", "message": f"injected {fault.status}"}]},
                        {"Retry-After": fault.retry_after} if fault.retry_after else None)
                    return
                if proxy.redirect_blobs and "/blobs/" in self.path and self.command == "GET":
                    entry.status = 307
                    self.send_response(307)
                    self.send_header("Location", proxy.redirect_blobs + "/blobs/"
                                     + self.path.rpartition("/blobs/")[2])
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                if "/blobs/" in self.path and any(part in self.path for part in proxy.held):
                    proxy.release.wait(timeout=HOLD_LIMIT)
                upstream = http.client.HTTPConnection("127.0.0.1", proxy.upstream_port,
                                                      timeout=30)
                try:
                    upstream.putrequest(self.command, self.path, skip_host=True,
                                        skip_accept_encoding=True)
                    for key, value in self.headers.items():  # repeated ones too (Accept)
                        if key.lower() not in ("connection", "keep-alive"):
                            upstream.putheader(key, value)
                    upstream.endheaders()
                    response = upstream.getresponse()
                except OSError:
                    upstream.close()
                    entry.status = 502
                    self.send_response(502)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                entry.status = response.status
                self.send_response(response.status, response.reason)
                for key, value in response.getheaders():
                    if key.lower() not in ("connection", "keep-alive", "transfer-encoding",
                                           "date", "server"):
                        self.send_header(key, value)
                self.end_headers()
                is_blob = "/blobs/" in self.path and self.command == "GET"
                if is_blob:
                    with proxy._lock:
                        proxy._active_blobs += 1
                        proxy.max_concurrent_blobs = max(proxy.max_concurrent_blobs,
                                                         proxy._active_blobs)
                try:
                    self._copy_body(response, entry, is_blob)
                finally:
                    if is_blob:
                        with proxy._lock:
                            proxy._active_blobs -= 1
                    upstream.close()

            def _copy_body(self, response: http.client.HTTPResponse, entry: LoggedRequest,
                           is_blob: bool) -> None:
                if self.command == "HEAD":
                    return
                chunk = 64 << 10
                started = time.monotonic()
                while True:
                    try:
                        data = response.read(chunk)
                    except (OSError, http.client.HTTPException):
                        data = None
                    if data is None or (not data and response.length):
                        self.close_connection = True  # upstream died: cut the client off
                        self.connection.shutdown(socket.SHUT_RDWR)
                        return
                    if not data:
                        return
                    self.wfile.write(data)
                    entry.sent += len(data)
                    if is_blob and proxy.on_blob_bytes is not None:
                        proxy.on_blob_bytes(len(data))
                    if is_blob and proxy.rate:
                        ahead = entry.sent / proxy.rate - (time.monotonic() - started)
                        if ahead > 0:
                            time.sleep(min(ahead, 1.0))

        return Handler


class BlobStore(LoopbackHTTPServer):
    """Blob storage on another port (another origin): ``GET /blobs/DIGEST`` answers the
    registry's stored blob, whole; every request is logged with its Authorization."""

    def __init__(self, registry: RegistryServer) -> None:
        self.registry = registry
        self.log: list[LoggedRequest] = []
        self._make_server(self._handler())

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        store = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def do_GET(self) -> None:
                store.log.append(LoggedRequest("GET", self.path, self.headers.get("Range"),
                                               authorization=self.headers.get("Authorization")))
                path = store.registry.blob_path(self.path.rpartition("/blobs/")[2])
                if not path.is_file():
                    return send_json(self, 404, {"errors": [{"code": "BLOB_UNKNOWN"}]})
                data = path.read_bytes()
                self.send_response(200)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        return Handler


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as data:
        for chunk in iter(lambda: data.read(1 << 20), b""):
            digest.update(chunk)
    return "sha256:" + digest.hexdigest()


def env_without_credentials(home: Path) -> dict[str, str]:
    """An environment whose auth files all live under ``home`` (none exist yet)."""
    env = dict(os.environ)
    for name in ("REGISTRY_AUTH_FILE", "DOCKER_CONFIG", "XDG_CONFIG_HOME"):
        env.pop(name, None)
    env["HOME"] = str(home)
    env["XDG_RUNTIME_DIR"] = str(home / "run")
    return env
