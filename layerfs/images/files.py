"""The files of an image, whether it is a directory or a tar archive of one.

OCI layouts, ``docker save`` output and skopeo's ``dir:`` are read the same
way from a directory and from a tar of it (``oci-archive:``,
``docker-archive:``, ``docker save -o x.tar``). Names are relative, ``/``
separated; in an archive, symlinks and hard links are resolved inside the
archive (``docker save`` shares layers as ``../<id>/layer.tar`` symlinks)
and never leave it.
"""

from __future__ import annotations

import errno
import lzma
import os
import posixpath
import stat
import tarfile
import zlib
from pathlib import Path
from typing import BinaryIO

from ..errors import ImageError
from ..oci.decode import parse_json

_MAX_LINK_HOPS = 32
MAX_ARCHIVE_MEMBERS = 1_000_000
# What tarfile may raise for a damaged archive (its headers, its gzip/bzip2/xz wrapping).
ARCHIVE_ERRORS = (tarfile.TarError, EOFError, ValueError, UnicodeError, OverflowError,
                  IndexError, KeyError, TypeError, RecursionError, OSError, zlib.error,
                  lzma.LZMAError)
MAX_JSON_BYTES = 32 << 20
"""Bigger than any real manifest, index or config; anything larger is refused unread."""


def read_bounded(source: BinaryIO, where: str, name: str, limit: int = MAX_JSON_BYTES) -> bytes:
    data = source.read(limit + 1)
    if len(data) > limit:
        raise ImageError(f"{where}: {name} is larger than {limit >> 20}M; refusing to read it")
    return data


class ImageFiles:
    """Read-only access to the files of an image by relative name."""

    where: str
    path: Path

    def exists(self, name: str) -> bool:
        raise NotImplementedError

    def is_dir(self, name: str) -> bool:
        raise NotImplementedError

    def listdir(self, name: str) -> list[str]:
        raise NotImplementedError

    def open(self, name: str) -> BinaryIO:
        raise NotImplementedError

    def size(self, name: str) -> int:
        raise NotImplementedError

    def close(self) -> None:
        pass

    @property
    def is_archive(self) -> bool:
        return False

    def read_bytes(self, name: str) -> bytes:
        """A small file (JSON, version stamps) whole; bounded by MAX_JSON_BYTES."""
        with self.open(name) as source:
            return read_bounded(source, self.where, name)

    def read_file(self, name: str, what: str = "") -> bytes:
        """A small file whole, any failure one clear ImageError (``what`` names it)."""
        try:
            return self.read_bytes(name)
        except (FileNotFoundError, NotADirectoryError, IsADirectoryError):
            raise ImageError(f"{self.where}: {what or name} is missing ({name})") from None
        except PermissionError:
            raise ImageError(f"{self.where}: {name}: permission denied") from None
        except ARCHIVE_ERRORS as exc:
            reason = getattr(exc, "strerror", None) or str(exc) or type(exc).__name__
            raise ImageError(f"{self.where}: {name}: cannot be read ({reason})") from None

    def read_json(self, name: str, what: str = "") -> object:
        return parse_json(self.read_file(name, what), self.where, name)


class DirFiles(ImageFiles):
    """An image directory. Names are resolved beneath it: a name or a symlink that would
    lead outside the image (absolute, ``..``) is an ImageError, never followed."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.where = str(path)
        self._root = os.path.realpath(path)

    def _full(self, name: str) -> str:
        return resolve_beneath(self._root, name, self.where)

    def exists(self, name: str) -> bool:
        try:
            return os.path.exists(self._full(name))
        except OSError:
            return False

    def is_dir(self, name: str) -> bool:
        try:
            return os.path.isdir(self._full(name))
        except OSError:
            return False

    def listdir(self, name: str) -> list[str]:
        try:
            return sorted(os.listdir(self._full(name)))
        except (OSError, ImageError):
            return []

    def open(self, name: str) -> BinaryIO:
        full = self._full(name)
        fd = os.open(full, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            os.close(fd)
            raise IsADirectoryError(errno.EISDIR, "not a regular file", name)
        return os.fdopen(fd, "rb")

    def size(self, name: str) -> int:
        return os.stat(self._full(name)).st_size


def resolve_beneath(root: str, name: str, where: str) -> str:
    """The path of ``name`` inside the directory ``root`` with every symlink resolved, as
    long as it stays inside; raises ImageError when ``name`` or a link leads out, and
    FileNotFoundError when a component is missing. ``root`` is a real path."""
    if "\0" in name or posixpath.isabs(name):
        raise ImageError(f"{where}: '{name}' is outside the image")
    pending = [p for p in name.split("/") if p and p != "."]
    pending.reverse()
    resolved: list[str] = []
    hops = 0
    while pending:
        part = pending.pop()
        if part == "..":
            if not resolved:
                raise ImageError(f"{where}: '{name}' is outside the image")
            resolved.pop()
            continue
        current = os.path.join(root, *resolved, part)
        try:
            st = os.lstat(current)
        except FileNotFoundError:
            raise
        except NotADirectoryError:
            raise FileNotFoundError(errno.ENOENT, "not found", name) from None
        if stat.S_ISLNK(st.st_mode):
            hops += 1
            target = os.readlink(current)
            shown = "/".join(resolved + [part])
            if hops > _MAX_LINK_HOPS:
                raise ImageError(f"{where}: {shown}: too many levels of links")
            if posixpath.isabs(target) or _climbs_out(resolved, target):
                raise ImageError(f"{where}: {shown} links outside the image ({target})")
            pending.extend(reversed([p for p in target.split("/") if p and p != "."]))
            continue
        resolved.append(part)
    return os.path.join(root, *resolved)


def _climbs_out(resolved: list[str], target: str) -> bool:
    depth = len(resolved)
    for part in target.split("/"):
        if part == "..":
            depth -= 1
            if depth < 0:
                return True
        elif part and part != ".":
            depth += 1
    return False


class TarFiles(ImageFiles):
    """An image archive, read member by member (never extracted)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.where = str(path)
        try:
            self._tar = tarfile.open(path, "r:*", errors="surrogateescape")
            members = []
            for member in self._tar:
                members.append(member)
                if len(members) > MAX_ARCHIVE_MEMBERS:
                    raise ImageError(f"{path}: more than {MAX_ARCHIVE_MEMBERS} files in the "
                                     "image archive")
        except ARCHIVE_ERRORS as exc:
            reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            raise ImageError(f"{path}: not a readable image archive ({reason})") from None
        self._members: dict[str, tarfile.TarInfo] = {}
        self._dirs: set[str] = {""}
        for member in members:
            name = _normal(member.name)
            self._members[name] = member
            parts = name.split("/")
            for depth in range(1, len(parts)):
                self._dirs.add("/".join(parts[:depth]))
            if member.isdir():
                self._dirs.add(name)

    @property
    def is_archive(self) -> bool:
        return True

    def close(self) -> None:
        self._tar.close()

    def _resolve(self, name: str) -> tarfile.TarInfo | None:
        if posixpath.isabs(name) or ".." in name.split("/"):
            raise ImageError(f"{self.where}: '{name}' is outside the image")
        name = _normal(name)
        for _ in range(_MAX_LINK_HOPS):
            member = self._members.get(name)
            if member is None or not (member.issym() or member.islnk()):
                return member
            if member.issym():
                target = posixpath.normpath(posixpath.join(posixpath.dirname(name),
                                                           member.linkname))
            else:
                target = posixpath.normpath(member.linkname)
            if target.startswith("../") or target == ".." or posixpath.isabs(target):
                raise ImageError(f"{self.where}: {name} links to {member.linkname}, "
                                 "outside the archive")
            name = _normal(target)
        raise ImageError(f"{self.where}: {name}: too many levels of links")

    def exists(self, name: str) -> bool:
        return _normal(name) in self._dirs or self._resolve(name) is not None

    def is_dir(self, name: str) -> bool:
        return _normal(name) in self._dirs

    def listdir(self, name: str) -> list[str]:
        prefix = _normal(name)
        prefix = prefix + "/" if prefix else ""
        children = {n[len(prefix):].split("/")[0] for n in list(self._members) + list(self._dirs)
                    if n.startswith(prefix) and n != prefix.rstrip("/") and n[len(prefix):]}
        return sorted(children)

    def open(self, name: str) -> BinaryIO:
        member = self._resolve(name)
        if member is None or not member.isfile():
            raise FileNotFoundError(name)
        reader = self._tar.extractfile(member)
        assert reader is not None
        return reader  # type: ignore[return-value]

    def size(self, name: str) -> int:
        member = self._resolve(name)
        if member is None:
            raise FileNotFoundError(name)
        return member.size


def _normal(name: str) -> str:
    parts = [p for p in name.split("/") if p and p != "."]
    return "/".join(parts)


def open_files(path: Path) -> ImageFiles:
    if path.is_dir():
        return DirFiles(path)
    if path.is_file():
        return TarFiles(path)
    raise ImageError(f"{path}: not a directory or an archive")
