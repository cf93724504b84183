"""A layer blob as a stream of tar bytes: decompressed by magic, hashed on the fly.

:class:`LayerStream` wraps the raw blob file. It sniffs the compression from
the first bytes (FORMATS.md 1.1: never trust media types or names), feeds the
compressed bytes to the blob digest and the decompressed ones to the DiffID,
and hands out the tar bytes. At the end of the data it supplies the zero
padding a truncated tar lacks (FORMATS.md 1.4.3); the padding is never hashed.
"""

from __future__ import annotations

import hashlib
import zlib
from typing import BinaryIO, Callable

from ..errors import ImageError

CHUNK = 1 << 20
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


def _gzip_decoder() -> "zlib._Decompress":
    return zlib.decompressobj(16 + zlib.MAX_WBITS)


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


class LayerStream:
    """Readable tar bytes of one layer blob, with the blob's and the tar's digests."""

    def __init__(self, raw: BinaryIO, label: str,
                 on_progress: Callable[[int], None] | None = None) -> None:
        self.label = label
        self._raw = raw
        self._on_progress = on_progress
        self._blob_hash = hashlib.sha256()
        self._diff_hash = hashlib.sha256()
        self.blob_size = 0
        self.diff_size = 0
        self.data_end = 0
        """Offset just past the last non-zero byte of the tar data."""
        self._out = bytearray()
        self._pos = 0
        self._raw_done = False
        self._padded = False
        head = self._read_raw()
        self.compression = sniff_compression(head)
        self._decoder = _DECODERS[self.compression]()
        self._member_open = False
        self._members = 0
        self._pending = b""
        self._feed(head)

    # -- results -------------------------------------------------------------

    @property
    def blob_digest(self) -> str:
        return "sha256:" + self._blob_hash.hexdigest()

    @property
    def diff_id(self) -> str:
        return "sha256:" + self._diff_hash.hexdigest()

    def drain(self) -> None:
        """Read to the end of the blob so the digests cover all of it."""
        while not self._padded:
            self._out.clear()
            self._pos = 0
            self._fill()

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

    def _read_raw(self) -> bytes:
        try:
            chunk = self._raw.read(CHUNK)
        except OSError as exc:
            raise ImageError(f"layer {self.label}: cannot read blob: {exc.strerror or exc}") from None
        if chunk:
            self._blob_hash.update(chunk)
            self.blob_size += len(chunk)
            if self._on_progress is not None:
                self._on_progress(len(chunk))
        return chunk

    def _fill(self) -> None:
        if self._raw_done:
            if not self._padded:
                self._out += bytes((-self.diff_size) % TAR_BLOCK + _END_OF_ARCHIVE)
                self._padded = True
            return
        chunk = self._read_raw()
        if not chunk:
            self._raw_done = True
            self._finish_decoder()
            return
        self._feed(chunk)

    def _starts_member(self, data: bytes) -> bool:
        """A gzip member or zstd frame starts here; zstd skippable frames (magic
        0x184D2A5?, e.g. zstd:chunked's table of contents) count, as the decoder skips them."""
        if data.startswith(_MAGIC[self.compression]):
            return True
        return self.compression == "zstd" and data[1:4] == _ZSTD_SKIPPABLE_TAIL \
            and data[0] & 0xF0 == 0x50

    def _feed(self, data: bytes) -> None:
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
                self._out += out
            if not compressed or not self._decoder.eof:
                return
            self._member_open = False
            data = self._decoder.unused_data

    def _finish_decoder(self) -> None:
        if self._pending:
            raise ImageError(f"layer {self.label}: garbage after the {self.compression} data")
        if self._member_open:
            raise ImageError(f"layer {self.label}: {self.compression} data is truncated")
