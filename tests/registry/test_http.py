"""The registry's HTTP client alone, against loopback sockets that accept and never
answer: the timeout (then the retries), and abort() cutting a request in flight."""

from __future__ import annotations

import socket
import threading
from typing import Iterator

import pytest

from layerfs.registry.errors import Cancelled, TransientError
from layerfs.registry.http import HttpClient, RetryPolicy


class SilentServer:
    """Accepts connections on 127.0.0.1 and never answers; counts them."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(8)
        self.port = self.sock.getsockname()[1]
        self.accepted: list[socket.socket] = []
        self.connected = threading.Event()
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.accepted.append(conn)
            self.connected.set()

    def close(self) -> None:
        self.sock.shutdown(socket.SHUT_RDWR)
        self.sock.close()
        self._thread.join(timeout=10)
        for conn in self.accepted:
            conn.close()


@pytest.fixture
def silent() -> Iterator[SilentServer]:
    server = SilentServer()
    try:
        yield server
    finally:
        server.close()


def test_a_silent_registry_times_out_and_is_retried(silent):
    client = HttpClient(timeout=0.5, retry=RetryPolicy(retries=1, backoff=0.05))
    with pytest.raises(TransientError, match=r"^x: timed out \(gave up after 2 attempts\)$"):
        client.request("GET", f"http://127.0.0.1:{silent.port}/v2/", what="x")
    assert len(silent.accepted) == 2


def test_abort_cuts_a_request_waiting_for_its_answer(silent):
    client = HttpClient(timeout=120)
    failure: list[BaseException] = []

    def ask() -> None:
        try:
            client.request("GET", f"http://127.0.0.1:{silent.port}/v2/", what="x")
        except BaseException as exc:  # noqa: BLE001 - handed to the test
            failure.append(exc)

    asker = threading.Thread(target=ask)
    asker.start()
    assert silent.connected.wait(30)
    client.abort()
    asker.join(30)  # well before the 120 s timeout
    assert not asker.is_alive()
    assert len(failure) == 1 and isinstance(failure[0], Cancelled)
