"""Downloading one blob resumably: partial files, HTTP ranges, retries, verification.

A blob being downloaded lives in ``<cache>/downloads/<alg>-<hex>.partial``.
:class:`BlobDownload` is a readable file: it first replays the bytes already in
the partial file (left by an interrupted pull), then asks the registry for the
rest with ``Range: bytes=N-``, appending what arrives. A dropped connection is
resumed the same way, under the registry retry policy (:meth:`.http.HttpClient.retrying`:
backoff, a bounded number of times in a row).

Every byte, replayed or new, goes through the digest; at the end size and
digest must match the manifest's descriptor, else the partial file is deleted
and the download fails. A partial file is only ever a head start for a
download that is verified whole, never trusted by itself. While a process
downloads a blob it holds an exclusive lock on its partial file, so two pulls
never append to the same file.
"""

from __future__ import annotations

import errno
import fcntl
import hashlib
import os
import re
import shutil
from pathlib import Path
from typing import Callable

from ..unpack.digests import parse_digest
from .client import RegistryClient
from .errors import RegistryError
from .http import Response

CHUNK = 1 << 20
_CONTENT_RANGE = re.compile(r"^bytes (\d+)-(\d+)/(\d+|\*)$")


def partial_path(directory: Path, digest: str) -> Path:
    algorithm, hex_digest = parse_digest(digest, "blob")
    return directory / f"{algorithm}-{hex_digest}.partial"


class BlobDownload:
    """A registry blob as a readable, resumable, verified stream."""

    def __init__(self, client: RegistryClient, digest: str, size: int, directory: Path,
                 *, what: str, on_bytes: Callable[[int], None] | None = None) -> None:
        self.client = client
        self.digest = digest
        self.size = size
        self.what = what
        self.path = partial_path(directory, digest)
        self.on_bytes = on_bytes
        self._algorithm = parse_digest(digest, what)[0]
        self._hash = hashlib.new(self._algorithm)
        self._fd: int | None = None
        self._on_disk = 0
        self._offset = 0
        self._response: Response | None = None
        self.resumed_from = 0
        """Bytes already on disk when the download started (a resumed download)."""
        self.complete = False

    # -- file protocol ---------------------------------------------------------------

    def open(self) -> "BlobDownload":
        if self._fd is not None:
            raise RegistryError(f"{self.what}: opened twice")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._fd = _open_locked(self.path)
        self._on_disk = os.fstat(self._fd).st_size
        if self._on_disk > self.size:  # not this blob's head: start afresh
            os.ftruncate(self._fd, 0)
            self._on_disk = 0
        self.resumed_from = self._on_disk
        self._offset = 0
        self._hash = hashlib.new(self._algorithm)
        self.complete = False
        return self

    def read(self, size: int = -1) -> bytes:
        if self._fd is None:
            raise RegistryError(f"{self.what}: read before open")
        self.client.http.check_cancelled()
        if self.complete or self._offset >= self.size and self._verify():
            return b""
        want = CHUNK if size is None or size < 0 else min(size, CHUNK)
        if self._offset < self._on_disk:
            data = os.pread(self._fd, min(want, self._on_disk - self._offset), self._offset)
            if not data:
                raise RegistryError(f"{self.what}: partial download {self.path} shrank")
        else:
            data = self._read_network(want)
            os.pwrite(self._fd, data, self._offset)
            self._on_disk = self._offset + len(data)
        self._offset += len(data)
        self._hash.update(data)
        if self.on_bytes is not None:
            self.on_bytes(len(data))
        if self._offset >= self.size:
            self._verify()
        return data

    def drain(self) -> None:
        """Read to the end (verifying), without keeping the bytes."""
        while self.read(CHUNK):
            pass

    def close(self) -> None:
        """Stop for now; the partial file stays for a later resume (unless verified bad)."""
        self._drop_response()
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> "BlobDownload":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- after a verified download ---------------------------------------------------------

    def take(self, destination: Path) -> None:
        """Move the verified blob to ``destination`` (e.g. an OCI layout's blobs/)."""
        if not self.complete:
            raise RegistryError(f"{self.what}: not completely downloaded")
        destination.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.replace(self.path, destination)
        except OSError:  # another filesystem
            tmp = destination.with_name(destination.name + f".{os.getpid()}.tmp")
            shutil.copyfile(self.path, tmp)
            os.replace(tmp, destination)
            self.path.unlink(missing_ok=True)

    def discard(self) -> None:
        """Remove the partial file (its content is now unpacked elsewhere)."""
        self.path.unlink(missing_ok=True)

    # -- internals -------------------------------------------------------------------

    def _verify(self) -> bool:
        if self._offset != self.size or self.complete:
            return self.complete
        actual = f"{self._algorithm}:{self._hash.hexdigest()}"
        if actual != self.digest:
            self.path.unlink(missing_ok=True)
            self.close()
            raise RegistryError(f"{self.what}: digest mismatch: the manifest says {self.digest}, "
                                f"the registry sent {actual} ({self.size} bytes)")
        self.complete = True
        self._drop_response()
        return True

    def _read_network(self, want: int) -> bytes:
        def attempt() -> bytes:
            try:
                if self._response is None:
                    self._response = self._request()
                data = self._response.read(min(want, self.size - self._offset))
                if not data:
                    raise ConnectionResetError(errno.ECONNRESET, "connection closed before "
                                               "the end of the blob")
                return data
            except BaseException:
                self._drop_response()  # the next attempt asks for the rest by range
                raise

        return self.client.http.retrying(
            self.what, attempt, where=lambda: f" at byte {self._offset} of {self.size}",
            hint="; pull again to resume")

    def _request(self) -> Response:
        response = self.client.open_blob(self.digest, self._offset, what=self.what)
        if self._offset and response.status == 200:  # the server ignored the range
            self._restart()
        elif response.status == 206:
            match = _CONTENT_RANGE.match(response.header("Content-Range") or "")
            if not match or int(match.group(1)) != self._offset:
                response.close()
                raise RegistryError(f"{self.what}: the registry answered range "
                                    f"{self._offset}- with '{response.header('Content-Range')}'")
        elif response.status != 200:
            response.close()
            raise RegistryError(f"{self.what}: unexpected answer {response.status}")
        return response

    def _restart(self) -> None:
        assert self._fd is not None
        os.ftruncate(self._fd, 0)
        self._on_disk = 0
        self._offset = 0
        self._hash = hashlib.new(self._algorithm)

    def _drop_response(self) -> None:
        if self._response is not None:
            self._response.close()
            self._response = None


def remove_partial(path: Path) -> bool:
    """Remove a partial download unless a pull is writing it; whether it was removed."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        return False
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False
        try:
            if os.fstat(fd).st_ino != os.stat(path).st_ino:
                return False  # finished and moved meanwhile; a new one took its place
        except FileNotFoundError:
            return False
        path.unlink()  # a pull that opens it after this makes a fresh one (_open_locked)
        return True
    finally:
        os.close(fd)


def _open_locked(path: Path) -> int:
    """Open and exclusively lock ``path``, making sure the locked file is still at ``path``
    (another process may have finished and moved it while we waited)."""
    for _ in range(16):
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            if os.fstat(fd).st_ino == os.stat(path).st_ino:
                return fd
        except FileNotFoundError:
            pass
        except BaseException:
            os.close(fd)
            raise
        os.close(fd)
    raise RegistryError(f"{path}: cannot lock the partial download")
