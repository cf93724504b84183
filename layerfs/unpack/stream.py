"""A layer blob as a stream of tar bytes: decompressed by magic, hashed on the fly.

:class:`LayerStream` wraps the raw blob file. It sniffs the compression from
the first bytes (FORMATS.md 1.1: never trust media types or names), feeds the
compressed bytes to the blob digest and the decompressed ones to the DiffID,
and hands out the tar bytes. At the end of the data it supplies the zero
padding a truncated tar lacks (FORMATS.md 1.4.3); the padding is never hashed.
"""

from __future__ import annotations

import hashlib
import lzma
import queue
import tarfile
import threading
import zlib
from typing import BinaryIO, Callable, Iterator

from ..errors import ImageError
from ..sizes import format_size

CHUNK = 1 << 20
READ_ERRORS = (OSError, EOFError, ValueError, tarfile.TarError, zlib.error, lzma.LZMAError)
GZIP_MAGIC = b"\x1f\x8b"
ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"
TAR_BLOCK = 512
# What a truncated tar lacks at most: the rest of its last block and the two end blocks.
_END_OF_ARCHIVE = 2 * TAR_BLOCK


def sniff_compression(head: bytes) -> str:
    if head.startswith(GZIP_MAGIC):
        return "gzip"
    if head.startswith(ZSTD_MAGIC):
        return "zstd"
    return "none"


class _Passthrough:
    eof = False
    unused_data = b""

    def decompress(self, data: bytes) -> bytes:
        return data


try:  # ISA-L's inflate is 2-3x faster than zlib's; same interface
    from isal import isal_zlib as _gzip_zlib
    GZIP_BACKEND = "isal"
except ImportError:  # pragma: no cover - optional
    _gzip_zlib = zlib  # type: ignore[assignment]
    GZIP_BACKEND = "zlib"


def _gzip_decoder():
    return _gzip_zlib.decompressobj(16 + zlib.MAX_WBITS)


def _zstd_decoder():
    try:
        import zstandard
    except ImportError:  # pragma: no cover - a declared dependency
        raise ImageError("zstd-compressed layer: install the 'zstandard' Python package") from None
    return zstandard.ZstdDecompressor().decompressobj()


_DECODERS: dict[str, Callable[[], object]] = {
    "gzip": _gzip_decoder, "zstd": _zstd_decoder, "none": _Passthrough,
}
_MAGIC = {"gzip": GZIP_MAGIC, "zstd": ZSTD_MAGIC}
_ZSTD_SKIPPABLE_TAIL = b"\x2a\x4d\x18"


class BlobDecoder:
    """Reads a raw blob, hashes it, and yields its decompressed (and hashed) tar bytes."""

    def __init__(self, raw: BinaryIO, label: str,
                 on_progress: Callable[[int], None] | None = None,
                 max_size: int | None = None) -> None:
        self.label = label
        self._raw = raw
        self._max_size = max_size
        self._on_progress = on_progress
        self._blob_hash = hashlib.sha256()
        self._diff_hash = hashlib.sha256()
        self.blob_size = 0
        self.diff_size = 0
        self.data_end = 0
        """Offset just past the last non-zero byte of the tar data."""
        self._head = self._read_raw()
        self.compression = sniff_compression(self._head)
        self._decoder = _DECODERS[self.compression]()
        self._member_open = False
        self._members = 0
        self._pending = b""

    @property
    def blob_digest(self) -> str:
        return "sha256:" + self._blob_hash.hexdigest()

    @property
    def diff_id(self) -> str:
        return "sha256:" + self._diff_hash.hexdigest()

    def chunks(self) -> Iterator[bytes]:
        chunk, self._head = self._head, b""
        while chunk:
            yield from self._decode(chunk)
            chunk = self._read_raw()
        if self._pending:
            raise ImageError(f"layer {self.label}: garbage after the {self.compression} data")
        if self._member_open:
            raise ImageError(f"layer {self.label}: {self.compression} data is truncated")

    def _read_raw(self) -> bytes:
        try:
            chunk = self._raw.read(CHUNK)
        except READ_ERRORS as exc:  # a blob inside a damaged (compressed) archive, too
            reason = getattr(exc, "strerror", None) or str(exc) or type(exc).__name__
            raise ImageError(f"layer {self.label}: cannot read blob: {reason}") from None
        if chunk:
            self._blob_hash.update(chunk)
            self.blob_size += len(chunk)
            if self._on_progress is not None:
                self._on_progress(len(chunk))
        return chunk

    def _starts_member(self, data: bytes) -> bool:
        """A gzip member or zstd frame starts here; zstd skippable frames (magic
        0x184D2A5?, e.g. zstd:chunked's table of contents) count, as the decoder skips them."""
        if data.startswith(_MAGIC[self.compression]):
            return True
        return self.compression == "zstd" and data[1:4] == _ZSTD_SKIPPABLE_TAIL \
            and data[0] & 0xF0 == 0x50

    def _decode(self, data: bytes) -> Iterator[bytes]:
        compressed = self.compression != "none"
        if self._pending:
            data, self._pending = self._pending + data, b""
        while data:
            if compressed and not self._member_open:
                if len(data) < len(_MAGIC[self.compression]) and data.strip(b"\0"):
                    self._pending = data  # a magic number split between two reads
                    return
                if self._members and not self._starts_member(data):
                    if data.strip(b"\0"):
                        raise ImageError(f"layer {self.label}: garbage after the "
                                         f"{self.compression} data")
                    return  # zero padding after the last member is ignored, as by gzip(1)
                self._decoder = _DECODERS[self.compression]()
                self._member_open = True
                self._members += 1
            try:
                out = self._decoder.decompress(data)
            except Exception as exc:  # zlib.error, zstandard.ZstdError
                raise ImageError(f"layer {self.label}: corrupt {self.compression} data "
                                 f"({exc})") from None
            if out:
                nonzero = len(out) if out[-1] else len(out.rstrip(b"\0"))
                if nonzero:
                    self.data_end = self.diff_size + nonzero
                self._diff_hash.update(out)
                self.diff_size += len(out)
                if self._max_size is not None and self.diff_size > self._max_size:
                    raise ImageError(f"layer {self.label}: more than {format_size(self._max_size)} "
                                     "of uncompressed data (raise the limit with "
                                     "--max-layer-size or LAYERFS_MAX_LAYER_SIZE)")
                yield out
            if not compressed or not self._decoder.eof:
                return
            self._member_open = False
            data = self._decoder.unused_data


_END = object()
_QUEUE_CHUNKS = 8


class LayerStream:
    """Readable tar bytes of one layer blob, with the blob's and the tar's digests.

    With ``background`` (the default) the blob is read, hashed and decompressed
    on a thread ahead of the reader (zlib, zstd and sha256 release the GIL), so
    unpacking uses a second core as ``tar -xzf`` does with its gzip process.
    """

    def __init__(self, raw: BinaryIO, label: str,
                 on_progress: Callable[[int], None] | None = None, *,
                 background: bool = True, max_size: int | None = None) -> None:
        self.label = label
        self._decoder = BlobDecoder(raw, label, on_progress, max_size)
        self._out = bytearray()
        self._pos = 0
        self._raw_done = False
        self._padded = False
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        if background:
            self._queue: queue.Queue = queue.Queue(_QUEUE_CHUNKS)
            self._thread = threading.Thread(target=self._produce, name="layer-decode",
                                            daemon=True)
            self._thread.start()
        else:
            self._chunks = self._decoder.chunks()

    # -- results (final once drained) ----------------------------------------

    @property
    def compression(self) -> str:
        return self._decoder.compression

    @property
    def blob_digest(self) -> str:
        return self._decoder.blob_digest

    @property
    def diff_id(self) -> str:
        return self._decoder.diff_id

    @property
    def blob_size(self) -> int:
        return self._decoder.blob_size

    @property
    def diff_size(self) -> int:
        return self._decoder.diff_size

    @property
    def data_end(self) -> int:
        return self._decoder.data_end

    def drain(self) -> None:
        """Read to the end of the blob so the digests cover all of it."""
        while not self._padded:
            self._out.clear()
            self._pos = 0
            self._fill()
        if self._thread is not None:
            self._thread.join()

    def close(self) -> None:
        """Stop the decoding thread (after a failure elsewhere)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join()

    # -- file protocol used by tarfile ---------------------------------------

    def read(self, size: int = -1) -> bytes:
        if size is None or size < 0:
            while not self._padded:
                self._fill()
            size = len(self._out) - self._pos
        while len(self._out) - self._pos < size and not self._padded:
            self._fill()
        end = min(self._pos + size, len(self._out))
        data = bytes(self._out[self._pos:end])
        self._pos = end
        if self._pos > CHUNK:
            del self._out[:self._pos]
            self._pos = 0
        return data

    # -- internals -------------------------------------------------------------

    def _fill(self) -> None:
        if self._raw_done:
            if not self._padded:
                self._out += bytes((-self.diff_size) % TAR_BLOCK + _END_OF_ARCHIVE)
                self._padded = True
            return
        chunk = self._next_chunk()
        if chunk is None:
            self._raw_done = True
        else:
            self._out += chunk

    def _next_chunk(self) -> bytes | None:
        if self._thread is None:
            return next(self._chunks, None)
        item = self._queue.get()
        if item is _END:
            return None
        if isinstance(item, BaseException):
            self._raw_done = self._padded = True
            raise item
        return item

    def _produce(self) -> None:
        try:
            for chunk in self._decoder.chunks():
                if not self._put(chunk):
                    return
            self._put(_END)
        except BaseException as exc:  # handed to the reader, which raises it
            self._put(exc)

    def _put(self, item: object) -> bool:
        while not self._stop.is_set():
            try:
                self._queue.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False
