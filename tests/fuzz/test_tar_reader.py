"""The unpacker's own tar reader against Python's tarfile on archives tarfile writes (ustar,
GNU, PAX; long names, odd bytes, xattrs, every type): the same members, fields and data."""

from __future__ import annotations

import io
import tarfile

from hypothesis import assume, given
from hypothesis import strategies as st

from layerfs.unpack.limits import UnpackLimits
from layerfs.unpack.tarformat import TarStreamReader

from .strategies import FUZZ

NAME = st.lists(st.one_of(st.sampled_from(["a", "etc", "x" * 120, "caf\udce9", "sp ace", "nl\nx",
                                           "d" * 255]),
                          st.text(min_size=1, max_size=12).filter(
                              lambda t: "/" not in t and "\0" not in t)),
                min_size=1, max_size=4).map("/".join)
TYPES = st.sampled_from([tarfile.REGTYPE, tarfile.DIRTYPE, tarfile.SYMTYPE, tarfile.LNKTYPE,
                         tarfile.CHRTYPE, tarfile.BLKTYPE, tarfile.FIFOTYPE])


@st.composite
def members(draw):
    info = tarfile.TarInfo(draw(NAME))
    info.type = draw(TYPES)
    info.mode = draw(st.integers(0, 0o7777))
    info.uid, info.gid = draw(st.integers(0, 2 ** 21 - 1)), draw(st.integers(0, 2 ** 21 - 1))
    info.mtime = draw(st.integers(0, 2 ** 33 - 1))
    if info.type in (tarfile.SYMTYPE, tarfile.LNKTYPE):
        info.linkname = draw(NAME)
    if info.type in (tarfile.CHRTYPE, tarfile.BLKTYPE):
        info.devmajor, info.devminor = draw(st.integers(0, 4095)), draw(st.integers(0, 4095))
    data = draw(st.binary(max_size=3000)) if info.type == tarfile.REGTYPE else b""
    info.size = len(data)
    return info, data


@FUZZ
@given(entries=st.lists(members(), max_size=8),
       tar_format=st.sampled_from([tarfile.GNU_FORMAT, tarfile.PAX_FORMAT,
                                   tarfile.USTAR_FORMAT]),
       xattr=st.booleans())
def test_reader_agrees_with_tarfile(entries, tar_format, xattr) -> None:
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=tar_format, encoding="utf-8",
                      errors="surrogateescape") as tar:
        for info, data in entries:
            if xattr and tar_format == tarfile.PAX_FORMAT:
                info.pax_headers = {"SCHILY.xattr.user.k": "v\udcff"}
            try:
                tar.addfile(info, io.BytesIO(data))
            except ValueError:  # ustar cannot hold this name (too long to split): not written
                assume(False)
    blob = out.getvalue()
    expected = []
    with tarfile.open(fileobj=io.BytesIO(blob), mode="r|", encoding="utf-8",
                      errors="surrogateescape") as tar:
        for member in tar:
            data = tar.extractfile(member).read() if member.isreg() else b""
            expected.append(_fields(member, data))
    reader = TarStreamReader(io.BytesIO(blob), "L", UnpackLimits())
    got = []
    for member in reader:
        data = reader.extractfile(member).read() if member.isreg() else b""
        got.append(_fields(member, data))
    assert got == expected


def _fields(member, data: bytes) -> tuple:
    xattrs = {k: v for k, v in member.pax_headers.items() if k.startswith("SCHILY.xattr.")}
    return (member.name, member.type, member.isreg(), member.isdir(), member.issym(),
            member.islnk(), member.mode, member.uid, member.gid, int(member.mtime),
            member.linkname, member.devmajor if member.ischr() or member.isblk() else 0,
            member.devminor if member.ischr() or member.isblk() else 0, member.size, data,
            xattrs)
