"""HTTP for registries on httpx, and the retry policy of every registry request.

httpx does the HTTP: one client shared by the pull's threads keeps connections
alive per host, follows redirects (blobs are often served from a CDN) and drops
the Authorization header on a redirect to another host, verifies TLS (against the
system's CA store, as ``curl`` does, so ``$SSL_CERT_FILE`` works), takes proxies
from the environment (``HTTPS_PROXY``, ``NO_PROXY``...) and reports failures as
typed exceptions. It was chosen over urllib3 and its ``Retry``: that would retry
statuses for us, but a pull must say each retry on a terminal, wake from a backoff
when cancelled, resume a body by range (:mod:`.download`) and fetch file ranges
(:mod:`.lazy`) under the same policy, so one small loop here serves all of them,
while httpx also gives the proxies and the cross-host redirect rule for free.

What stays here is what no HTTP library decides for a registry:

- :meth:`HttpClient.retrying`: a failure on the way (reset, timeout, truncated
  response) or a 408/425/429/5xx is tried again with exponential backoff
  (jitter; ``Retry-After`` honoured), a bounded number of times; each retry is
  said on stderr when it is a terminal. A registry that refuses the connection
  (or has no route) before it ever answered is not retried: nothing listens
  there, and waiting would only delay the error (or the use of the cache); one
  that answered before and refuses now (restarting) is retried.
- ``insecure`` skips TLS verification and, when a host does not speak TLS at
  all, falls back to plain HTTP for it (as Docker does for insecure registries).
- :meth:`HttpClient.abort` cuts every connection, so threads blocked on a
  stalled response stop now rather than at the timeout.
"""

from __future__ import annotations

import errno
import logging
import os
import random
import socket
import ssl
import sys
import threading
import urllib.parse
import weakref
from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable, Iterator, TypeVar

from .. import __version__
from .errors import Cancelled, RegistryError, TransientError, UnreachableError

if TYPE_CHECKING:
    import httpx  # imported when first used: every layerfs command imports this module

USER_AGENT = f"layerfs/{__version__}"
DEFAULT_TIMEOUT = 30.0
TRANSIENT_STATUS = frozenset({408, 425, 429, 500, 502, 503, 504})
MAX_REDIRECTS = 5
T = TypeVar("T")

# httpx logs each request at INFO and httpcore each socket event at DEBUG: a lazy mount
# asks for a range per file opened, which must not fill the daemon's log.
logging.getLogger("httpx").setLevel(logging.WARNING)
logging.getLogger("httpcore").setLevel(logging.WARNING)


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


class RetryStatus(Exception):
    """A response worth asking again for (408, 429, 5xx), with its Retry-After."""

    def __init__(self, response: "Response") -> None:
        super().__init__(f"{response.status} {response.reason}")
        self.retry_after = response.header("Retry-After")


def _cause(exc: BaseException) -> BaseException:
    """The system error under httpx's exception (a refused connection, a TLS alert),
    else the exception itself."""
    link: BaseException | None = exc
    for _ in range(8):
        if link is None:
            break
        if isinstance(link, OSError):
            return link
        link = link.__cause__ or link.__context__  # httpcore re-raises some `from None`
    return exc


_UNREACHABLE_ERRNOS = frozenset({errno.ECONNREFUSED, errno.EHOSTUNREACH, errno.ENETUNREACH,
                                 errno.ENETDOWN})


def is_transient(exc: BaseException) -> bool:
    """Whether a failed request is worth retrying."""
    import httpx
    if isinstance(exc, RegistryError):
        return False  # judged already (TransientError: the retries are used up)
    cause = _cause(exc)
    if isinstance(cause, ssl.SSLError):
        return isinstance(cause, (ssl.SSLEOFError, ssl.SSLZeroReturnError))
    if isinstance(cause, socket.gaierror):
        return False
    return isinstance(exc, (RetryStatus, httpx.TimeoutException, httpx.NetworkError,
                            httpx.RemoteProtocolError, ConnectionError, TimeoutError))


def is_unreachable(exc: BaseException) -> bool:
    """Nothing answers at the address: refused, or no route to it."""
    cause = _cause(exc)
    return isinstance(cause, OSError) and cause.errno in _UNREACHABLE_ERRNOS


def describe_failure(exc: BaseException) -> str:
    cause = _cause(exc)
    if isinstance(cause, OSError) and cause.strerror:
        return cause.strerror
    return str(exc) or type(exc).__name__


def _fatal(exc: Exception, what: str, url: str) -> Exception:
    """A failure no retry cures, as one line naming what was asked for."""
    import httpx
    host = urllib.parse.urlsplit(url).netloc
    cause = _cause(exc)
    if isinstance(cause, ssl.SSLCertVerificationError):
        return RegistryError(f"{what}: TLS certificate of {host} not trusted "
                             f"({cause.verify_message}); --insecure skips verification")
    if isinstance(cause, ssl.SSLError):
        return RegistryError(f"{what}: TLS handshake with {host} failed ({cause.reason}); "
                             "a registry without TLS needs --insecure")
    if isinstance(cause, socket.gaierror):
        return UnreachableError(f"{what}: cannot resolve {host} ({cause.strerror})")
    if isinstance(exc, httpx.TooManyRedirects):
        return RegistryError(f"{what}: more than {MAX_REDIRECTS} redirects")
    if isinstance(exc, (OSError, httpx.HTTPError)):
        return RegistryError(f"{what}: {host}: {describe_failure(exc)}")
    return exc


def _cut(sock: socket.socket) -> None:
    """Wake whoever waits on ``sock``: a read returns at once, the connection is dead."""
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass


class Response:
    """A streamed response, read like a file; its connection goes back to the pool once
    the body is read to the end (closed before that, the connection is dropped)."""

    def __init__(self, raw: httpx.Response) -> None:
        self.raw = raw
        self.url = str(raw.url)
        self.status = raw.status_code
        self.reason = raw.reason_phrase
        self._chunks: Iterator[bytes] = raw.iter_raw()  # as sent: digests are of these bytes
        self._buffer = bytearray()

    def header(self, name: str, default: str | None = None) -> str | None:
        return self.raw.headers.get(name, default)

    def read(self, size: int = -1) -> bytes:
        """Up to ``size`` bytes (all with -1); fewer only at the end of the body."""
        size = -1 if size is None else size
        while size < 0 or len(self._buffer) < size:
            chunk = next(self._chunks, None)
            if chunk is None:
                break
            self._buffer += chunk
        size = len(self._buffer) if size < 0 else size
        data = bytes(self._buffer[:size])
        del self._buffer[:size]
        return data

    def read_all(self, limit: int) -> bytes:
        """The whole body, refusing bodies larger than ``limit``."""
        with self:
            data = self.read(limit + 1)
        if len(data) > limit:
            raise RegistryError(f"{self.url}: response larger than {limit} bytes")
        return data

    def close(self) -> None:
        self.raw.close()

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
        self._plain_hosts: set[str] = set()
        self._answered: set[str] = set()
        """Hosts that have answered a request: one that refuses later is restarting."""
        self._sockets: weakref.WeakSet[socket.socket] = weakref.WeakSet()
        """Every connection's socket, so that :meth:`abort` can cut the ones in use."""
        self._lock = threading.Lock()
        self._client: httpx.Client | None = None
        self._pid = 0

    def url(self, netloc: str, path: str) -> str:
        scheme = "http" if netloc in self._plain_hosts else "https"
        return f"{scheme}://{netloc}{path}"

    # -- requests ------------------------------------------------------------------

    def request(self, method: str, url: str, headers: dict[str, str] | None = None,
                body: bytes | None = None, *, what: str) -> Response:
        """Send a request, retrying transient failures; redirects are followed.

        Returns the final response whatever its status (the caller judges 4xx);
        raises TransientError once the retries are used up, naming ``what``."""
        import httpx

        def attempt() -> Response:
            try:
                response = self._send(method, url, headers or {}, body)
            except httpx.HTTPError as exc:
                host = urllib.parse.urlsplit(str(exc.request.url)).netloc \
                    if isinstance(exc, httpx.RequestError) else ""
                if is_unreachable(exc) and host not in self._answered:
                    raise UnreachableError(f"{what}: {host}: {describe_failure(exc)}") from None
                if not is_transient(exc):
                    raise _fatal(exc, what, url) from None
                raise
            if response.status in TRANSIENT_STATUS:
                response.close()
                raise RetryStatus(response)
            return response
        return self.retrying(what, attempt)

    def retrying(self, what: str, attempt: Callable[[], T], *,
                 where: Callable[[], str] = lambda: "", hint: str = "") -> T:
        """``attempt()`` until it succeeds: a transient failure (:func:`is_transient`)
        waits and tries again, up to the policy's retries in a row; then a
        TransientError names ``what``, the failure, ``where()`` and ``hint``."""
        failures = 0
        while True:
            self.check_cancelled()
            try:
                return attempt()
            except Exception as exc:
                if not is_transient(exc):
                    raise
                failure = describe_failure(exc)
                retry_after = exc.retry_after if isinstance(exc, RetryStatus) else None
            failures += 1
            if failures > self.retry.retries:
                raise TransientError(f"{what}: {failure}{where()} (gave up after {failures} "
                                     f"attempt{'s' if failures > 1 else ''}{hint})")
            self.wait_to_retry(what, failure, failures, retry_after)

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
        with self._lock:
            sockets = list(self._sockets)
        for sock in sockets:
            _cut(sock)

    # -- internals -------------------------------------------------------------------

    def _send(self, method: str, url: str, headers: dict[str, str],
              body: bytes | None) -> Response:
        import httpx
        parts = urllib.parse.urlsplit(url)
        if parts.scheme == "https" and parts.netloc in self._plain_hosts:
            url = "http" + url[len("https"):]
        client = self._http()
        request = client.build_request(method, url, headers=headers, content=body,
                                       extensions={"trace": self._trace})
        try:
            raw = client.send(request, stream=True)
        except httpx.ConnectError as exc:
            cause = _cause(exc)
            if self.insecure and url.startswith("https:") and \
                    isinstance(cause, ssl.SSLError) and not is_transient(exc):
                self._plain_hosts.add(parts.netloc)  # the host does not speak TLS
                return self._send(method, url, headers, body)
            raise
        for answer in (*raw.history, raw):
            self._answered.add(urllib.parse.urlsplit(str(answer.url)).netloc)
        return Response(raw)

    def _http(self) -> httpx.Client:
        """The httpx client of this process (not across fork: the parent owns those
        sockets)."""
        import httpx
        with self._lock:
            if self._client is None or self._pid != os.getpid():
                tls = ssl.create_default_context()
                if self.insecure:
                    tls.check_hostname = False
                    tls.verify_mode = ssl.CERT_NONE
                self._client = httpx.Client(
                    verify=tls, timeout=self.timeout, follow_redirects=True,
                    max_redirects=MAX_REDIRECTS,
                    limits=httpx.Limits(max_connections=None, max_keepalive_connections=32),
                    headers={"User-Agent": USER_AGENT, "Accept-Encoding": "identity"})
                self._pid = os.getpid()
            return self._client

    def _trace(self, event: str, info: dict) -> None:
        """httpcore's trace hook: notes each new connection's socket for :meth:`abort`."""
        if event in ("connection.connect_tcp.complete", "connection.start_tls.complete"):
            stream = info.get("return_value")
            sock = stream.get_extra_info("socket") if stream is not None else None
            if sock is not None:
                with self._lock:
                    self._sockets.add(sock)
                if self.cancel.is_set():  # connected while abort() ran: it may have missed it
                    _cut(sock)
