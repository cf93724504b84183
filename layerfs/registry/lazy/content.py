"""Fetching a lazy layer's file data on first open, with HTTP range requests.

:meth:`LazyContent.ensure` is the :class:`layerfs.layer.ContentSource` the
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
import zlib

from ...backing import open_beneath
from ..client import RegistryClient
from ..errors import RegistryError
from .skeleton import LazyLayer
from .toc import FileData

log = logging.getLogger(__name__)
CHUNK = 1 << 20


class _Gunzip:
    """Readable decompression of concatenated gzip members (eStargz ranges)."""

    def __init__(self, raw) -> None:  # type: ignore[no-untyped-def]
        self.raw = raw
        self.decoder = zlib.decompressobj(16 + zlib.MAX_WBITS)
        self.buffer = b""
        self.done = False

    def read(self, size: int) -> bytes:
        while len(self.buffer) < size and not self.done:
            compressed = self.decoder.unused_data or self.raw.read(CHUNK)
            if self.decoder.eof:
                self.decoder = zlib.decompressobj(16 + zlib.MAX_WBITS)
            if not compressed:
                self.done = True
                break
            try:
                self.buffer += self.decoder.decompress(compressed)
            except zlib.error as exc:
                raise RegistryError(f"corrupt gzip data ({exc})") from None
        data, self.buffer = self.buffer[:size], self.buffer[size:]
        return data


def decoded(raw, encoding: str):  # type: ignore[no-untyped-def]
    """A reader of the decoded bytes of a range."""
    if encoding == "plain":
        return raw
    if encoding == "gzip":
        return _Gunzip(raw)
    if encoding == "zstd":
        import zstandard
        return zstandard.ZstdDecompressor().stream_reader(raw, read_across_frames=True)
    raise RegistryError(f"unknown encoding {encoding}")


def _skip(reader, count: int, what: str) -> None:  # type: ignore[no-untyped-def]
    while count:
        chunk = reader.read(min(CHUNK, count))
        if not chunk:
            raise RegistryError(f"{what}: the blob ends before the file's data")
        count -= len(chunk)


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
        root_fd = os.open(self.lazy.root, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            fd = open_beneath(root_fd, relpath, os.O_WRONLY)
        finally:
            os.close(root_fd)
        try:
            times = os.fstat(fd)
            self.client.http.retrying(what, lambda: self._write(fd, data, what))
            os.utime(fd, ns=(times.st_atime_ns, times.st_mtime_ns))
        finally:
            os.close(fd)
        self.fetches += 1

    def _write(self, fd: int, data: FileData, what: str) -> None:
        whole = hashlib.sha256()
        written = 0
        for part in data.parts:
            piece = hashlib.sha256()
            with self.client.open_blob(self.lazy.blob_digest, part.start, part.end - 1,
                                       what=what) as response:
                if response.status != 206:
                    raise RegistryError(f"{what}: the registry does not serve ranges")
                reader = decoded(response, data.encoding)
                _skip(reader, part.skip, what)
                remaining = part.size
                while remaining:
                    chunk = reader.read(min(CHUNK, remaining))
                    if not chunk:
                        raise RegistryError(f"{what}: the blob ends {remaining} bytes short "
                                            "of what the table of contents says")
                    os.pwrite(fd, chunk, written)
                    whole.update(chunk)
                    piece.update(chunk)
                    written += len(chunk)
                    remaining -= len(chunk)
            if part.digest.startswith("sha256:") and \
                    "sha256:" + piece.hexdigest() != part.digest:
                self._punch(fd, data.size)
                raise RegistryError(f"{what}: digest mismatch of the part at {part.start}: the "
                                    f"table of contents says {part.digest}, the data is "
                                    f"sha256:{piece.hexdigest()}")
        if written != data.size:
            self._punch(fd, data.size)
            raise RegistryError(f"{what}: got {written} bytes, the table of contents "
                                f"says {data.size}")
        if data.digest.startswith("sha256:") and "sha256:" + whole.hexdigest() != data.digest:
            self._punch(fd, data.size)
            raise RegistryError(f"{what}: digest mismatch: the table of contents says "
                                f"{data.digest}, the data is sha256:{whole.hexdigest()}")

    @staticmethod
    def _punch(fd: int, size: int) -> None:
        """Back to a hole of the right size: wrong data is never served."""
        os.ftruncate(fd, 0)
        os.ftruncate(fd, size)

    def _note(self, relpath: bytes) -> None:
        self.fetched.add(relpath)
        fd = os.open(self.lazy.fetched_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC,
                     0o644)
        try:
            os.write(fd, relpath.hex().encode() + b"\n")
        finally:
            os.close(fd)
