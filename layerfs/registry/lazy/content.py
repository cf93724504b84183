"""Fetching a lazy layer's file data on first open, with HTTP range requests.

:meth:`LazyContent.ensure` is the :data:`layerfs.layer.CONTENT_KEY` hook the
FUSE ``open`` calls (in a worker thread) before opening the backing file. The
first open of a file fetches its byte range of the blob, decodes it (zstd
frames for zstd:chunked), checks its size and, where the format has one, its
sha256, and writes it into the sparse skeleton file (keeping its times). Other
opens of the same data wait for that fetch. Fetched files are noted in
``fetched.log`` so a later mount of the same skeleton does not fetch them again.
A failure is an EIO for that open, logged; the next open tries again.
"""

from __future__ import annotations

import hashlib
import logging
import os
import threading

from ...backing import open_beneath
from ..client import RegistryClient
from ..errors import RegistryError
from ..http import describe_failure, is_transient
from .skeleton import LazyLayer
from .toc import FileData

log = logging.getLogger(__name__)
CHUNK = 1 << 20


class LazyContent:
    def __init__(self, client: RegistryClient, lazy: LazyLayer, label: str) -> None:
        self.client = client
        self.lazy = lazy
        self.label = label
        self.kind, self.plan = lazy.plan()
        self.fetched: set[bytes] = set()
        self.fetches = 0
        """Files fetched by this process (for tests and logs)."""
        try:
            with open(lazy.fetched_path, "rb") as log_file:
                self.fetched = {bytes.fromhex(line.strip().decode()) for line in log_file
                                if line.strip()}
        except (FileNotFoundError, ValueError):
            pass
        self._guard = threading.Lock()
        self._locks: dict[FileData, threading.Lock] = {}
        self._done: set[FileData] = set()

    def ensure(self, relpath: bytes) -> None:
        data = self.plan.get(relpath)
        if data is None or relpath in self.fetched or data in self._done:
            return
        with self._guard:
            lock = self._locks.setdefault(data, threading.Lock())
        with lock:
            if relpath in self.fetched or data in self._done:
                return
            try:
                self._fetch(relpath, data)
            except Exception as exc:
                log.warning("layer %s: cannot fetch %s: %s", self.label,
                            os.fsdecode(relpath), exc)
                raise
            self._done.add(data)
            self._note(relpath)

    # -- internals -------------------------------------------------------------------

    def _fetch(self, relpath: bytes, data: FileData) -> None:
        what = f"layer {self.label}: file {os.fsdecode(relpath)}"
        http = self.client.http
        attempt = 0
        root_fd = os.open(self.lazy.root, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            fd = open_beneath(root_fd, relpath, os.O_WRONLY)
        finally:
            os.close(root_fd)
        try:
            times = os.fstat(fd)
            while True:
                try:
                    self._write(fd, data, what)
                    break
                except Exception as exc:
                    if not is_transient(exc):
                        raise
                    attempt += 1
                    if attempt > http.retry.retries:
                        raise RegistryError(f"{what}: {describe_failure(exc)} "
                                            f"(gave up after {attempt} attempts)") from None
                    http.sleep(http.retry.delay(attempt))
            os.utime(fd, ns=(times.st_atime_ns, times.st_mtime_ns))
        finally:
            os.close(fd)
        self.fetches += 1

    def _write(self, fd: int, data: FileData, what: str) -> None:
        digest = hashlib.sha256()
        written = 0
        with self.client.open_blob(self.lazy.blob_digest, data.start, data.end - 1,
                                   what=what) as response:
            if response.status != 206:
                raise RegistryError(f"{what}: the registry does not serve ranges")
            source = response
            if data.encoding == "zstd":
                import zstandard
                source = zstandard.ZstdDecompressor().stream_reader(
                    response, read_across_frames=True)  # type: ignore[assignment]
            while written <= data.size:
                chunk = source.read(CHUNK)
                if not chunk:
                    break
                os.pwrite(fd, chunk, written)
                digest.update(chunk)
                written += len(chunk)
        if written != data.size:
            raise RegistryError(f"{what}: got {written} bytes, the table of contents "
                                f"says {data.size}")
        if data.digest and data.digest.startswith("sha256:") and \
                "sha256:" + digest.hexdigest() != data.digest:
            os.ftruncate(fd, 0)
            os.ftruncate(fd, data.size)  # back to a hole: never serve wrong data
            raise RegistryError(f"{what}: digest mismatch: the table of contents says "
                                f"{data.digest}, the data is sha256:{digest.hexdigest()}")

    def _note(self, relpath: bytes) -> None:
        self.fetched.add(relpath)
        fd = os.open(self.lazy.fetched_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC,
                     0o644)
        try:
            os.write(fd, relpath.hex().encode() + b"\n")
        finally:
            os.close(fd)
