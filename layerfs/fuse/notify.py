"""Invalidation notices to the kernel (api.Notifier).

A notice is a message on the device with unique 0 and the notice code in
the error field. The kernel may block writing an INVAL_ENTRY until the
directory's lock is free, and a request on that directory may hold it while
waiting for our reply; dropping an inode's pages may wait on a page a read
holds. So those notices are never written from a request's handler but
queued for one sender thread. Dropping an inode's attributes takes no lock a
request can hold, and it must not be overtaken by the reply of the change
that made them stale (a stat right after a copy-up would see the old nlink):
that part is written at once, by the caller. The kernel answers ENOENT for
an inode or name it does not hold: not an error, nothing was cached.
"""

from __future__ import annotations

import errno
import logging
import os
import queue
import threading

from . import abi

log = logging.getLogger("layerfs.fuse")


class Notifier:
    """Queue invalidation notices for the FUSE descriptor ``fd``; thread-safe."""

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self._queue: queue.SimpleQueue[list[bytes] | None] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._send_all, name="fuse-notify", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        """Send what is queued, then end the sender thread."""
        if self._thread is not None:
            self._queue.put(None)
            self._thread.join(timeout=5)
            self._thread = None

    def invalidate_inode(self, ino: int, *, attr_only: bool = False) -> None:
        # Offset -1: attributes only, written now; 0 with length 0: also every
        # cached page (a directory's cached listing lives in its pages), queued.
        attributes = abi.NOTIFY_INVAL_INODE_OUT.pack(ino, -1, 0)
        self._send([self._header(abi.NOTIFY_INVAL_INODE, len(attributes)), attributes])
        if not attr_only:
            pages = abi.NOTIFY_INVAL_INODE_OUT.pack(ino, 0, 0)
            self._queue.put([self._header(abi.NOTIFY_INVAL_INODE, len(pages)), pages])

    def invalidate_entry(self, parent: int, name: bytes) -> None:
        body = abi.NOTIFY_INVAL_ENTRY_OUT.pack(parent, len(name), 0)
        self._queue.put([self._header(abi.NOTIFY_INVAL_ENTRY, len(body) + len(name) + 1),
                         body, name, b"\0"])

    @staticmethod
    def _header(code: int, size: int) -> bytes:
        return abi.OUT_HEADER.pack(abi.OUT_HEADER.size + size, code, 0)

    def _send_all(self) -> None:
        while (message := self._queue.get()) is not None:
            if not self._send(message):
                return  # unmounted

    def _send(self, message: list[bytes]) -> bool:
        """Write one notice; False once the connection is gone."""
        try:
            os.writev(self.fd, message)
        except OSError as exc:
            if exc.errno == errno.ENODEV:
                return False
            if exc.errno != errno.ENOENT:
                log.warning("invalidation notice refused by the kernel: %s", exc.strerror)
        return True
