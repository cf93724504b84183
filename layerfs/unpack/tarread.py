"""Reading the members of a layer tar with bounded memory and one kind of error.

:mod:`tarfile` reads PAX and GNU long-name headers into memory whole and
chains them by recursion; here each such header is bounded in size and in
number before an entry (:class:`~layerfs.unpack.limits.UnpackLimits`), GNU
sparse maps are bounded too, and any malformed header, whatever exception
:mod:`tarfile` raises for it, becomes an :class:`ImageError` naming the
layer and the offset.
"""

from __future__ import annotations

import tarfile
from typing import BinaryIO, Iterator

from ..errors import ImageError, LayerfsError
from .limits import UnpackLimits

_EXTENDED = frozenset({tarfile.XHDTYPE, tarfile.XGLTYPE, tarfile.SOLARIS_XHDTYPE,
                       tarfile.GNUTYPE_LONGNAME, tarfile.GNUTYPE_LONGLINK})
_MEMBERS_KEPT = 1024
# What tarfile raises for malformed headers besides TarError (fuzzing found each).
HEADER_ERRORS = (tarfile.TarError, EOFError, ValueError, UnicodeError, OverflowError,
                 IndexError, KeyError, TypeError, RecursionError, MemoryError)


class TarReader:
    """Iterates over the members of a tar stream; ``tar`` reads a member's data."""

    def __init__(self, stream: BinaryIO, label: str, limits: UnpackLimits) -> None:
        self.label = label
        self.limits = limits
        self._chain = 0
        reader = self

        class BoundedTarInfo(tarfile.TarInfo):
            def _proc_member(self, tar):  # type: ignore[no-untyped-def]
                if self.type not in _EXTENDED:
                    return super()._proc_member(tar)
                reader._check_extended(self)
                reader._chain += 1
                try:
                    return super()._proc_member(tar)
                finally:
                    reader._chain -= 1

            def _proc_sparse(self, tar):  # type: ignore[no-untyped-def]
                return reader._old_gnu_sparse(self, tar)

            def _proc_gnusparse_10(self, next, pax_headers, tar):  # type: ignore[no-untyped-def]
                reader._pax_sparse_10(next, tar)

        try:
            self.tar = tarfile.open(fileobj=stream, mode="r|", errors="surrogateescape",
                                    encoding="utf-8", tarinfo=BoundedTarInfo)
        except HEADER_ERRORS as exc:
            raise self._invalid(0, exc) from None

    @property
    def offset(self) -> int:
        """Where the next header starts (after the last member: the end of the entries)."""
        return self.tar.offset

    def __iter__(self) -> Iterator[tarfile.TarInfo]:
        while True:
            try:
                member = self.tar.next()
            except LayerfsError:
                raise
            except HEADER_ERRORS as exc:
                raise self._invalid(self.tar.offset, exc) from None
            if member is None:
                return
            if len(self.tar.members) > _MEMBERS_KEPT:
                self.tar.members.clear()  # tarfile keeps every header; a layer may have millions
            yield member

    def close(self) -> None:
        self.tar.close()

    # -- bounds ------------------------------------------------------------------

    def _check_extended(self, header: tarfile.TarInfo) -> None:
        if self._chain >= self.limits.max_header_chain:
            raise ImageError(f"layer {self.label}: more than {self.limits.max_header_chain} "
                             f"extended headers in a row at offset {header.offset}")
        if header.size > self.limits.max_header_size:
            raise ImageError(f"layer {self.label}: an extended header of {header.size} bytes "
                             f"at offset {header.offset} (at most "
                             f"{self.limits.max_header_size} are read)")

    # -- sparse maps (GNU formats), read here with a bound on their length ---------

    def _map_limit(self) -> int:
        return self.limits.max_header_size // 24  # an old GNU map entry takes 24 bytes

    def _old_gnu_sparse(self, member: tarfile.TarInfo, tar: tarfile.TarFile) -> tarfile.TarInfo:
        """Type 'S': up to 4 map entries in the header, then 21 per extension block."""
        entries, extended, real_size = member._sparse_structs  # type: ignore[attr-defined]
        del member._sparse_structs  # type: ignore[attr-defined]
        blocks = 0
        while extended:
            blocks += 1
            if blocks > self.limits.max_header_size // tarfile.BLOCKSIZE:
                raise ImageError(f"layer {self.label}: sparse entry '{member.name}' has an "
                                 f"oversized map (more than "
                                 f"{self.limits.max_header_size // tarfile.BLOCKSIZE} "
                                 "extension blocks)")
            block = tar.fileobj.read(tarfile.BLOCKSIZE)
            if len(block) < tarfile.BLOCKSIZE:
                raise tarfile.ReadError("unexpected end of data in a sparse map")
            for position in range(0, 21 * 24, 24):
                try:
                    offset = tarfile.nti(block[position:position + 12])
                    length = tarfile.nti(block[position + 12:position + 24])
                except tarfile.InvalidHeaderError:
                    break
                if offset and length:
                    entries.append((offset, length))
            extended = bool(block[504])
        member.sparse = entries
        member.offset_data = tar.fileobj.tell()
        tar.offset = member.offset_data + member._block(member.size)  # type: ignore[attr-defined]
        member.size = real_size
        return member

    def _pax_sparse_10(self, member: tarfile.TarInfo, tar: tarfile.TarFile) -> None:
        """PAX sparse 1.0: the map is decimal lines at the start of the data."""
        pending = tar.fileobj.read(tarfile.BLOCKSIZE)
        count_text, _, pending = pending.partition(b"\n")
        count = int(count_text)
        if not 0 <= count <= self._map_limit():
            raise ImageError(f"layer {self.label}: sparse entry '{member.name}' has a map "
                             f"of {count} entries (at most {self._map_limit()})")
        numbers: list[int] = []
        while len(numbers) < 2 * count:
            if b"\n" not in pending:
                block = tar.fileobj.read(tarfile.BLOCKSIZE)
                if not block:
                    raise tarfile.ReadError("unexpected end of data in a sparse map")
                pending += block
                continue
            number, _, pending = pending.partition(b"\n")
            numbers.append(int(number))
        member.offset_data = tar.fileobj.tell()
        member.sparse = list(zip(numbers[::2], numbers[1::2], strict=True))

    def _invalid(self, offset: int, exc: BaseException) -> ImageError:
        reason = str(exc) or type(exc).__name__
        if isinstance(exc, RecursionError):
            reason = "headers nested too deeply"
        return ImageError(f"layer {self.label}: not a valid tar archive (at offset {offset}: "
                          f"{reason.splitlines()[0] if reason else reason})")
