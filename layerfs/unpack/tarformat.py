"""A streaming reader of layer tars: ustar, GNU and PAX headers, without :mod:`tarfile`.

Written for the unpacker: names stay bytes, every header is bounded (size of
extended headers, how many in a row, length of sparse maps), any malformed
input is a :class:`TarFormatError` naming the offset, and file data is handed
out in slices of the decoded stream with as few copies as Python allows
(:mod:`tarfile`'s stream mode costs about ten times more per entry).

Understood: ustar (with the name prefix), GNU (base-256 numbers, ``L``/``K``
long names, old ``S`` sparse files), PAX ``x``/``g`` headers (``path``,
``linkpath``, ``size``, ``uid``, ``gid``, ``mtime``, ``SCHILY.xattr.*``, GNU
sparse formats 0.0, 0.1 and 1.0), V7 directories (a regular file whose name
ends in ``/``). Other types are skipped with their data, as tar does.

:class:`TarMember` has the attribute and method names of ``tarfile.TarInfo``
that the unpacker uses, so the two stay interchangeable.
"""

from __future__ import annotations

import os
from typing import Iterator, Protocol

from ..errors import ImageError
from .limits import UnpackLimits
from .names import shown

BLOCK = 512
REGULAR = b"0"
AREGULAR = b"\0"
CONTIGUOUS = b"7"
HARDLINK, SYMLINK, CHAR, BLOCKDEV, DIRECTORY, FIFO = b"1", b"2", b"3", b"4", b"5", b"6"
GNU_SPARSE = b"S"
PAX_LOCAL, PAX_GLOBAL, SOLARIS_PAX = b"x", b"g", b"X"
GNU_LONGNAME, GNU_LONGLINK = b"L", b"K"
_HEADER_ONLY = frozenset({HARDLINK, SYMLINK, CHAR, BLOCKDEV, DIRECTORY, FIFO})
_REGULAR = frozenset({REGULAR, AREGULAR, CONTIGUOUS, GNU_SPARSE})
_EXTENDED = frozenset({PAX_LOCAL, PAX_GLOBAL, SOLARIS_PAX, GNU_LONGNAME, GNU_LONGLINK})
_XATTR = "SCHILY.xattr."


class TarFormatError(ImageError):
    """The bytes are not a tar archive (or not one that can be read safely)."""


class Readable(Protocol):
    def read(self, size: int) -> bytes: ...


def _text(raw: bytes) -> str:
    return raw.decode("utf-8", "surrogateescape")


class TarMember:
    """One entry, with the field names of ``tarfile.TarInfo``. Names are ``str`` holding
    the raw bytes (``os.fsencode`` gives them back)."""

    __slots__ = ("name", "linkname", "type", "mode", "uid", "gid", "mtime", "size",
                 "devmajor", "devminor", "pax_headers", "sparse", "offset", "offset_data",
                 "stored_size")

    def __init__(self) -> None:
        self.pax_headers: dict[str, str] = {}
        self.sparse: list[tuple[int, int]] | None = None

    def isreg(self) -> bool:
        return self.type in _REGULAR

    def isdir(self) -> bool:
        return self.type == DIRECTORY

    def issym(self) -> bool:
        return self.type == SYMLINK

    def islnk(self) -> bool:
        return self.type == HARDLINK

    def ischr(self) -> bool:
        return self.type == CHAR

    def isblk(self) -> bool:
        return self.type == BLOCKDEV

    def isfifo(self) -> bool:
        return self.type == FIFO


def _number(field: bytes) -> int:
    """An octal field (NUL/space padded) or a GNU base-256 one; ValueError if neither."""
    if field and field[0] & 0x80:
        if field[0] != 0x80:
            raise ValueError("negative number")
        return int.from_bytes(field[1:], "big")
    digits = field.split(b"\0", 1)[0].strip(b" ")
    return int(digits, 8) if digits else 0


def _checksum_ok(block: bytes) -> bool:
    try:
        stored = _number(block[148:156])
    except ValueError:
        return False
    unsigned = sum(block) - sum(block[148:156]) + 8 * 0x20
    if stored == unsigned:
        return True
    signed = sum(b - 256 if b > 127 else b for b in block) \
        - sum(b - 256 if b > 127 else b for b in block[148:156]) + 8 * 0x20
    return stored == signed


def _nul_terminated(field: bytes) -> bytes:
    return field.split(b"\0", 1)[0]


class TarStreamReader:
    """Iterates over the members of the tar ``stream``; :meth:`extractfile` reads the data of
    the member just returned (before the next one is asked for)."""

    def __init__(self, stream: Readable, label: str, limits: UnpackLimits) -> None:
        self._stream = stream
        self.label = label
        self.limits = limits
        self.offset = 0
        """Stream position of the next header (after the last member: the end of entries)."""
        self._position = 0
        self._data_left = 0   # unread data bytes of the current member
        self._padding = 0     # and its padding
        self._globals: dict[bytes, bytes] = {}

    # -- reading the stream ----------------------------------------------------

    def _read(self, size: int) -> bytes:
        data = self._stream.read(size)
        self._position += len(data)
        return data

    def _read_exactly(self, size: int, what: str) -> bytes:
        data = self._read(size)
        if len(data) != size:
            raise TarFormatError(f"layer {self.label}: tar data ends inside {what}")
        return data

    def _skip(self, size: int) -> None:
        while size > 0:
            chunk = self._read(min(size, 1 << 20))
            if not chunk:
                break
            size -= len(chunk)

    def _invalid(self, offset: int, reason: str) -> TarFormatError:
        if offset == 0:
            return TarFormatError(f"layer {self.label}: not a valid tar archive ({reason} at "
                                  "offset 0)")
        return TarFormatError(f"layer {self.label}: invalid tar header at offset {offset} "
                              f"({reason})")

    # -- members ---------------------------------------------------------------------

    def __iter__(self) -> Iterator[TarMember]:
        while True:
            member = self.next()
            if member is None:
                return
            yield member

    def next(self) -> TarMember | None:
        self._skip(self._data_left + self._padding)
        self._data_left = self._padding = 0
        local: dict[bytes, bytes] = {}
        long_name = long_link = None
        chain = 0
        while True:
            start = self._position
            block = self._read(BLOCK)
            if len(block) < BLOCK or not block.strip(b"\0"):
                self.offset = start
                if len(block) < BLOCK and block.strip(b"\0"):
                    raise self._invalid(start, "truncated header")
                return None
            if not _checksum_ok(block):
                raise self._invalid(start, "bad checksum")
            kind = block[156:157]
            try:
                size = _number(block[124:136])
            except ValueError:
                raise self._invalid(start, "invalid size field") from None
            if kind not in _EXTENDED:
                break
            chain += 1
            if chain > self.limits.max_header_chain:
                raise TarFormatError(f"layer {self.label}: more than "
                                     f"{self.limits.max_header_chain} extended headers in a row "
                                     f"at offset {start}")
            if size > self.limits.max_header_size:
                raise TarFormatError(f"layer {self.label}: an extended header of {size} bytes "
                                     f"at offset {start} (at most "
                                     f"{self.limits.max_header_size} are read)")
            data = self._read_exactly(size, f"the extended header at offset {start}")
            self._skip(-size % BLOCK)
            if kind == GNU_LONGNAME:
                long_name = _nul_terminated(data)
            elif kind == GNU_LONGLINK:
                long_link = _nul_terminated(data)
            else:
                records = self._pax_records(data, start)
                if kind == PAX_GLOBAL:
                    self._globals.update(records)
                else:
                    local.update(records)
        return self._member(block, start, size, local, long_name, long_link)

    def _member(self, block: bytes, start: int, size: int, local: dict[bytes, bytes],
                long_name: bytes | None, long_link: bytes | None) -> TarMember:
        member = TarMember()
        member.offset = start
        kind = block[156:157]
        try:
            member.mode = _number(block[100:108])
            member.uid = _number(block[108:116])
            member.gid = _number(block[116:124])
            member.mtime = _number(block[136:148])
            member.devmajor = _number(block[329:337])
            member.devminor = _number(block[337:345])
        except ValueError:
            raise self._invalid(start, "invalid number field") from None
        name = _nul_terminated(block[0:100])
        if block[257:263] == b"ustar\0" and block[345] != 0:  # POSIX ustar: name prefix
            name = _nul_terminated(block[345:500]) + b"/" + name
        if long_name is not None:
            name = long_name
        link = long_link if long_link is not None else _nul_terminated(block[157:257])
        records = {**self._globals, **local} if self._globals else local
        if records:
            name, link, size = self._apply_pax(member, records, name, link, size, start)
        if kind == AREGULAR and name.endswith(b"/"):
            kind = DIRECTORY  # V7: a directory is a file whose name ends in '/'
        if kind == DIRECTORY:
            name = name.rstrip(b"/")
        member.type = kind
        member.name = _text(name)
        member.linkname = _text(link)
        stored = size  # bytes of data in the archive
        member.size = size
        if kind == GNU_SPARSE:
            member.size = self._old_gnu_sparse(member, block, start)
        elif records and (b"GNU.sparse.map" in records or b"GNU.sparse.major" in records
                          or b"GNU.sparse.offset" in records):
            stored = self._pax_sparse(member, records, stored, start)
        if kind in _HEADER_ONLY:
            stored = 0
        member.stored_size = stored
        member.offset_data = self._position
        self._data_left = stored
        self._padding = -stored % BLOCK
        self.offset = self._position + stored + self._padding
        return member

    # -- PAX -------------------------------------------------------------------------

    def _pax_records(self, data: bytes, start: int) -> dict[bytes, bytes]:
        records: dict[bytes, bytes] = {}
        repeated: dict[bytes, list[bytes]] = {}
        position = 0
        while position < len(data):
            if not data[position:].strip(b"\0"):
                break  # some writers pad the record block with NULs
            space = data.find(b" ", position, position + 24)
            try:
                length = int(data[position:space]) if space > position else -1
            except ValueError:
                length = -1
            end = position + length
            if length <= space - position or end > len(data) or data[end - 1:end] != b"\n":
                raise self._invalid(start, "malformed PAX record")
            key, equals, value = data[space + 1:end - 1].partition(b"=")
            if not equals or not key:
                raise self._invalid(start, "malformed PAX record")
            if key in (b"GNU.sparse.offset", b"GNU.sparse.numbytes"):  # sparse 0.0: repeated
                repeated.setdefault(key, []).append(value)
            else:
                records[key] = value
            position = end
        for key, values in repeated.items():
            records[key] = b",".join(values) + b","
        return records

    def _apply_pax(self, member: TarMember, records: dict[bytes, bytes], name: bytes,
                   link: bytes, size: int, start: int) -> tuple[bytes, bytes, int]:
        try:
            if b"path" in records:
                name = records[b"path"]
            if b"GNU.sparse.name" in records:
                name = records[b"GNU.sparse.name"]
            if b"linkpath" in records:
                link = records[b"linkpath"]
            if b"size" in records:
                size = _decimal(records[b"size"])
            for key, attribute in ((b"uid", "uid"), (b"gid", "gid")):
                if key in records:
                    setattr(member, attribute, _decimal(records[key]))
            if b"mtime" in records:
                member.mtime = float(records[b"mtime"])
        except ValueError:
            raise self._invalid(start, "invalid number in a PAX record") from None
        member.pax_headers = {_text(k): _text(v) for k, v in records.items()
                              if k.startswith(b"SCHILY.xattr.")}
        return name, link, size

    # -- sparse files --------------------------------------------------------------------

    def _map_limit(self) -> int:
        return self.limits.max_header_size // 24

    def _old_gnu_sparse(self, member: TarMember, block: bytes, start: int) -> int:
        """Type 'S': 4 map entries in the header, 21 per extension block; returns the real
        size."""
        try:
            entries = _map_entries(block, 386, 4)
            real_size = _number(block[483:495])
            extended = block[482]
            blocks = 0
            while extended:
                blocks += 1
                if blocks > self.limits.max_header_size // BLOCK:
                    raise TarFormatError(
                        f"layer {self.label}: sparse entry '{member.name}' has an oversized map "
                        f"(more than {self.limits.max_header_size // BLOCK} extension blocks)")
                extension = self._read_exactly(BLOCK, f"the sparse map of '{member.name}'")
                entries += _map_entries(extension, 0, 21)
                extended = extension[504]
        except ValueError:
            raise self._invalid(start, "invalid sparse map") from None
        member.sparse = entries
        return real_size

    def _pax_sparse(self, member: TarMember, records: dict[bytes, bytes], stored: int,
                    start: int) -> int:
        """GNU sparse formats 0.0, 0.1 (map in the header) and 1.0 (map before the data);
        returns the stored data size that remains to be read."""
        try:
            real = records.get(b"GNU.sparse.realsize") or records.get(b"GNU.sparse.size")
            member.size = _decimal(real) if real is not None else stored
            if b"GNU.sparse.map" in records:
                numbers = [_decimal(x) for x in records[b"GNU.sparse.map"].split(b",") if x]
            elif b"GNU.sparse.offset" in records:
                offsets = records[b"GNU.sparse.offset"].split(b",")[:-1]
                lengths = records.get(b"GNU.sparse.numbytes", b"").split(b",")[:-1]
                numbers = [_decimal(x) for pair in zip(offsets, lengths, strict=True)
                           for x in pair]
            else:
                numbers, used = self._sparse_map_in_data(member, start)
                if used > stored:
                    raise self._invalid(start, "sparse map larger than the entry")
                stored -= used
        except ValueError:
            raise self._invalid(start, "invalid sparse map") from None
        if len(numbers) % 2:
            raise self._invalid(start, "invalid sparse map")
        member.sparse = list(zip(numbers[::2], numbers[1::2], strict=True))
        return stored

    def _sparse_map_in_data(self, member: TarMember, start: int) -> tuple[list[int], int]:
        what = f"the sparse map of '{member.name}'"
        pending = self._read_exactly(BLOCK, what)
        used = BLOCK
        count_text, _, pending = pending.partition(b"\n")
        count = _decimal(count_text)
        if count > self._map_limit():
            raise TarFormatError(f"layer {self.label}: sparse entry '{member.name}' has a map "
                                 f"of {count} entries (at most {self._map_limit()})")
        numbers: list[int] = []
        while len(numbers) < 2 * count:
            if b"\n" not in pending:
                pending += self._read_exactly(BLOCK, what)
                used += BLOCK
                continue
            number, _, pending = pending.partition(b"\n")
            numbers.append(_decimal(number))
        return numbers, used

    # -- data ----------------------------------------------------------------------------

    def extractfile(self, member: TarMember) -> "MemberData":
        return MemberData(self, member)

    def _read_data(self, size: int, member: TarMember) -> bytes:
        size = min(size, self._data_left)
        data = self._read(size)
        self._data_left -= len(data)
        if len(data) < size:
            raise TarFormatError(f"layer {self.label}: tar data ends inside entry "
                                 f"'{shown(os.fsencode(member.name))}'")
        return data


def _decimal(text: bytes) -> int:
    value = int(text)
    if value < 0:
        raise ValueError("negative")
    return value


def _map_entries(block: bytes, first: int, count: int) -> list[tuple[int, int]]:
    entries = []
    for position in range(first, first + 24 * count, 24):
        offset_field = block[position:position + 12]
        if not offset_field.strip(b"\0"):
            break
        entries.append((_number(offset_field), _number(block[position + 12:position + 24])))
    return entries


class MemberData:
    """The data of one member as a file: ``read(n)``; sparse files come with their holes."""

    def __init__(self, reader: TarStreamReader, member: TarMember) -> None:
        self._reader = reader
        self._member = member
        self._sparse = _sparse_chunks(reader, member) if member.sparse is not None else None
        self._pending = b""

    def read(self, size: int = -1) -> bytes:
        if size is None or size < 0:
            size = self._member.size if self._sparse is not None else self._reader._data_left
            size = max(size, 0)
        if self._sparse is None:
            return self._reader._read_data(size, self._member)
        out = [self._pending]
        have = len(self._pending)
        while have < size:
            chunk = next(self._sparse, b"")
            if not chunk:
                break
            out.append(chunk)
            have += len(chunk)
        data = b"".join(out)
        self._pending = data[size:]
        return data[:size]


def _sparse_chunks(reader: TarStreamReader, member: TarMember) -> Iterator[bytes]:
    """The real content of a sparse member: stored pieces at their offsets, zeros between."""
    position = 0
    for offset, length in sorted(member.sparse or []):
        if offset < position or offset + length > member.size:
            raise TarFormatError(f"layer {reader.label}: sparse entry '{member.name}' has an "
                                 "inconsistent map")
        yield from _zeros(offset - position)
        left = length
        while left:
            piece = reader._read_data(min(left, 1 << 20), member)
            left -= len(piece)
            yield piece
        position = offset + length
    yield from _zeros(member.size - position)


def _zeros(count: int) -> Iterator[bytes]:
    while count > 0:
        piece = min(count, 1 << 20)
        yield bytes(piece)
        count -= piece
