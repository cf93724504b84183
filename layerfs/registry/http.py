"""HTTP for registries: keep-alive connections per thread, retries with backoff, redirects.

Only the standard library: a registry needs GET/HEAD/POST, ranges, redirects and
retries, which ``http.client`` gives without a dependency. A request is retried
on connection failures (reset, timeout, truncated response) and on 408/429/5xx,
with exponential backoff (jitter; ``Retry-After`` honoured), a bounded number of
times; each retry is said on stderr when it is a terminal. A registry that refuses
the connection (or has no route) before it ever answered is not retried: nothing
listens there, and waiting would only delay the error (or the use of the cache);
one that answered before and refuses now (restarting) is retried. Redirects are
followed (blobs are often served from a CDN); credentials are never forwarded to
another host.

``insecure`` skips TLS verification and, when a host does not speak TLS at all,
falls back to plain HTTP for it (as Docker does for insecure registries).
"""

from __future__ import annotations

import http.client
import os
import random
import socket
import ssl
import sys
import threading
import urllib.parse
import weakref
from dataclasses import dataclass
from typing import Iterable

from .. import __version__
from .errors import Cancelled, RegistryError, TransientError, UnreachableError

USER_AGENT = f"layerfs/{__version__}"
DEFAULT_TIMEOUT = 30.0
TRANSIENT_STATUS = frozenset({408, 425, 429, 500, 502, 503, 504})
MAX_REDIRECTS = 5
_REDIRECTS = frozenset({301, 302, 303, 307, 308})


@dataclass(frozen=True)
class RetryPolicy:
    retries: int = 5
    """Further attempts after the first one fails."""
    backoff: float = 0.5
    """Seconds before the first retry; doubled for each further one."""
    max_backoff: float = 8.0

    def delay(self, attempt: int, retry_after: str | None = None) -> float:
        """Seconds to wait before retry number ``attempt`` (1-based)."""
        if retry_after and retry_after.strip().isdigit():
            return min(float(retry_after), self.max_backoff * 2)
        base = min(self.backoff * (2 ** (attempt - 1)), self.max_backoff)
        return base * (0.75 + random.random() / 2)


def is_transient(exc: BaseException) -> bool:
    """Whether a failed request is worth retrying."""
    if isinstance(exc, ssl.SSLError):
        return isinstance(exc, (ssl.SSLEOFError, ssl.SSLZeroReturnError))
    return isinstance(exc, (ConnectionError, TimeoutError, socket.timeout,
                            http.client.IncompleteRead, http.client.BadStatusLine,
                            http.client.RemoteDisconnected)) or \
        (isinstance(exc, OSError) and exc.errno in _TRANSIENT_ERRNOS)


_TRANSIENT_ERRNOS = frozenset({
    getattr(__import__("errno"), name) for name in
    ("ECONNREFUSED", "ECONNRESET", "ECONNABORTED", "EPIPE", "ETIMEDOUT", "EHOSTUNREACH",
     "ENETUNREACH", "ENETDOWN")})


_UNREACHABLE_ERRNOS = frozenset({
    getattr(__import__("errno"), name) for name in
    ("ECONNREFUSED", "EHOSTUNREACH", "ENETUNREACH", "ENETDOWN")})


def is_unreachable(exc: BaseException) -> bool:
    """Nothing answers at the address: refused, or no route to it."""
    return isinstance(exc, OSError) and exc.errno in _UNREACHABLE_ERRNOS


def attempts(count: int) -> str:
    return f"{count} attempt" + ("s" if count != 1 else "")


def describe_failure(exc: BaseException) -> str:
    if isinstance(exc, http.client.IncompleteRead):
        return "connection closed before the end of the response"
    if isinstance(exc, http.client.RemoteDisconnected):
        return "connection closed without a response"
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    return str(exc) or type(exc).__name__


def _fatal(exc: Exception, what: str, url: str) -> Exception:
    """A failure no retry cures, as one line naming what was asked for."""
    host = urllib.parse.urlsplit(url).netloc
    if isinstance(exc, ssl.SSLCertVerificationError):
        return RegistryError(f"{what}: TLS certificate of {host} not trusted "
                             f"({exc.verify_message}); --insecure skips verification")
    if isinstance(exc, ssl.SSLError):
        return RegistryError(f"{what}: TLS handshake with {host} failed ({exc.reason}); "
                             "a registry without TLS needs --insecure")
    if isinstance(exc, socket.gaierror):
        return UnreachableError(f"{what}: cannot resolve {host} ({exc.strerror})")
    if isinstance(exc, (OSError, http.client.HTTPException)):
        return RegistryError(f"{what}: {host}: {describe_failure(exc)}")
    return exc


class Response:
    """A response whose body is read on demand; its connection is reused once it is read."""

    def __init__(self, client: "HttpClient", key: tuple[str, str],
                 conn: http.client.HTTPConnection, raw: http.client.HTTPResponse,
                 url: str) -> None:
        self._client = client
        self._key = key
        self._conn: http.client.HTTPConnection | None = conn
        self.raw = raw
        self.url = url
        self.status = raw.status
        self.reason = raw.reason

    def header(self, name: str, default: str | None = None) -> str | None:
        return self.raw.getheader(name, default)

    def read(self, size: int = -1) -> bytes:
        data = self.raw.read() if size is None or size < 0 else self.raw.read(size)
        if self.raw.isclosed():
            self._release()
        return data

    def read_all(self, limit: int) -> bytes:
        """The whole body, refusing bodies larger than ``limit``."""
        data = self.raw.read(limit + 1)
        if len(data) > limit:
            self.close()
            raise RegistryError(f"{self.url}: response larger than {limit} bytes")
        self.close()
        return data

    def close(self) -> None:
        if self._conn is None:
            return
        if self.raw.isclosed():
            self._release()
            return
        self.raw.close()
        self._conn.close()  # unread body bytes would corrupt the next response
        self._conn = None

    def _release(self) -> None:
        if self._conn is not None:
            self._client._return(self._key, self._conn)
            self._conn = None

    def __enter__(self) -> "Response":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class HttpClient:
    def __init__(self, *, insecure: bool = False, timeout: float = DEFAULT_TIMEOUT,
                 retry: RetryPolicy | None = None,
                 cancel: threading.Event | None = None) -> None:
        self.insecure = insecure
        self.timeout = timeout
        self.retry = retry or RetryPolicy()
        self.cancel = cancel or threading.Event()
        self._local = threading.local()
        self._connections: weakref.WeakSet[http.client.HTTPConnection] = weakref.WeakSet()
        """Every connection made, so that :meth:`abort` can cut the ones in use."""
        self._connections_lock = threading.Lock()
        self._plain_hosts: set[str] = set()
        self._answered: set[str] = set()
        """Hosts that have answered a request: one that refuses later is restarting."""
        self._tls = ssl.create_default_context()
        if insecure:
            self._tls.check_hostname = False
            self._tls.verify_mode = ssl.CERT_NONE

    # -- URLs ----------------------------------------------------------------------

    def url(self, netloc: str, path: str) -> str:
        scheme = "http" if netloc in self._plain_hosts else "https"
        return f"{scheme}://{netloc}{path}"

    # -- requests ------------------------------------------------------------------

    def request(self, method: str, url: str, headers: dict[str, str] | None = None,
                body: bytes | None = None, *, what: str,
                retry_status: Iterable[int] = TRANSIENT_STATUS) -> Response:
        """Send a request, retrying transient failures and following redirects.

        Returns the final response whatever its status (the caller judges 4xx);
        raises TransientError once the retries are used up, naming ``what``."""
        retry_status = frozenset(retry_status)
        attempt = 0
        while True:
            self.check_cancelled()
            try:
                response = self._follow(method, url, dict(headers or {}), body)
            except Exception as exc:
                host = urllib.parse.urlsplit(url).netloc
                if is_unreachable(exc) and host not in self._answered:
                    raise UnreachableError(f"{what}: {host}: {describe_failure(exc)}") from None
                if not is_transient(exc):
                    raise _fatal(exc, what, url) from None
                failure, retry_after = describe_failure(exc), None
            else:
                if response.status not in retry_status:
                    return response
                failure = f"{response.status} {response.reason}"
                retry_after = response.header("Retry-After")
                response.close()
            attempt += 1
            if attempt > self.retry.retries:
                raise TransientError(f"{what}: {failure} (gave up after {attempts(attempt)})")
            self.wait_to_retry(what, failure, attempt, retry_after)

    def wait_to_retry(self, what: str, failure: str, attempt: int,
                      retry_after: str | None = None) -> None:
        """Back off before retry number ``attempt``, saying so when stderr is a terminal
        (a pull that stalls for seconds must not look hung)."""
        delay = self.retry.delay(attempt, retry_after)
        if sys.stderr is not None and sys.stderr.isatty():
            print(f"layerfs: {what}: {failure}; retrying in {delay:.1f} s "
                  f"(retry {attempt} of {self.retry.retries})", file=sys.stderr, flush=True)
        self.sleep(delay)

    def sleep(self, seconds: float) -> None:
        """Wait, unless the operation is cancelled meanwhile."""
        if self.cancel.wait(seconds):
            raise Cancelled("cancelled")

    def check_cancelled(self) -> None:
        if self.cancel.is_set():
            raise Cancelled("cancelled")

    def abort(self) -> None:
        """Cancel, and cut every open connection, so that threads blocked reading a
        stalled response stop now rather than at the timeout (any thread may call it)."""
        self.cancel.set()
        with self._connections_lock:
            connections = list(self._connections)
        for conn in connections:
            sock = conn.sock
            if sock is not None:
                try:
                    sock.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def _follow(self, method: str, url: str, headers: dict[str, str],
                body: bytes | None) -> Response:
        for _ in range(MAX_REDIRECTS + 1):
            response = self._send(method, url, headers, body)
            if response.status not in _REDIRECTS:
                return response
            location = response.header("Location")
            response.close()
            if not location:
                return response
            target = urllib.parse.urljoin(url, location)
            if urllib.parse.urlsplit(target).netloc != urllib.parse.urlsplit(url).netloc:
                headers.pop("Authorization", None)
            if response.status == 303:
                method, body = "GET", None
            url = target
        raise TransientError(f"{url}: too many redirects")

    def _send(self, method: str, url: str, headers: dict[str, str],
              body: bytes | None) -> Response:
        parts = urllib.parse.urlsplit(url)
        scheme, netloc = parts.scheme, parts.netloc
        if scheme == "https" and netloc in self._plain_hosts:
            scheme = "http"
        target = parts.path or "/"
        if parts.query:
            target += "?" + parts.query
        headers.setdefault("User-Agent", USER_AGENT)
        for _ in range(2):
            key = (scheme, netloc)
            conn = self._take(key)
            fresh = conn is None
            if conn is None:
                conn = self._connect(scheme, netloc)
            try:
                conn.request(method, target, body=body, headers=headers)
                raw = conn.getresponse()
                self._answered.add(netloc)
            except ssl.SSLError as exc:
                conn.close()
                if self.insecure and scheme == "https" and not is_transient(exc):
                    self._plain_hosts.add(netloc)  # the host does not speak TLS
                    scheme = "http"
                    continue
                raise
            except (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError):
                conn.close()
                if not fresh:
                    continue  # a kept-alive connection the server had closed: once more
                raise
            except BaseException:
                conn.close()
                raise
            return Response(self, key, conn, raw, f"{scheme}://{netloc}{target}")
        raise TransientError(f"{url}: cannot connect")

    # -- connections -----------------------------------------------------------------

    def _pool(self) -> dict[tuple[str, str], http.client.HTTPConnection]:
        pool = getattr(self._local, "pool", None)
        if pool is None or getattr(self._local, "pid", None) != os.getpid():
            pool = self._local.pool = {}  # not across fork: the parent owns those sockets
            self._local.pid = os.getpid()
        return pool

    def _take(self, key: tuple[str, str]) -> http.client.HTTPConnection | None:
        return self._pool().pop(key, None)

    def _return(self, key: tuple[str, str], conn: http.client.HTTPConnection) -> None:
        pool = self._pool()
        old = pool.get(key)
        if old is not None and old is not conn:
            old.close()
        pool[key] = conn

    def _connect(self, scheme: str, netloc: str) -> http.client.HTTPConnection:
        conn: http.client.HTTPConnection
        if scheme == "https":
            conn = http.client.HTTPSConnection(netloc, timeout=self.timeout, context=self._tls)
        elif scheme == "http":
            conn = http.client.HTTPConnection(netloc, timeout=self.timeout)
        else:
            raise TransientError(f"{scheme}://{netloc}: unsupported URL scheme")
        with self._connections_lock:
            self._connections.add(conn)
        return conn
