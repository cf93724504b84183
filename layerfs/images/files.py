"""The files of an image, whether it is a directory or a tar archive of one.

OCI layouts, ``docker save`` output and skopeo's ``dir:`` are read the same
way from a directory and from a tar of it (``oci-archive:``,
``docker-archive:``, ``docker save -o x.tar``). Names are relative, ``/``
separated; in an archive, symlinks and hard links are resolved inside the
archive (``docker save`` shares layers as ``../<id>/layer.tar`` symlinks)
and never leave it.
"""

from __future__ import annotations

import json
import os
import posixpath
import tarfile
from pathlib import Path
from typing import BinaryIO

from ..errors import ImageError

_MAX_LINK_HOPS = 32


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
        with self.open(name) as source:
            return source.read()

    def read_json(self, name: str, what: str = "") -> object:
        try:
            data = self.read_bytes(name)
        except FileNotFoundError:
            raise ImageError(f"{self.where}: {what or name} is missing ({name})") from None
        except PermissionError:
            raise ImageError(f"{self.where}: {name}: permission denied") from None
        try:
            return json.loads(data)
        except ValueError as exc:
            raise ImageError(f"{self.where}: {name} is not valid JSON ({exc})") from None


class DirFiles(ImageFiles):
    def __init__(self, path: Path) -> None:
        self.path = path
        self.where = str(path)

    def _full(self, name: str) -> Path:
        return self.path / name

    def exists(self, name: str) -> bool:
        return self._full(name).exists()

    def is_dir(self, name: str) -> bool:
        return self._full(name).is_dir()

    def listdir(self, name: str) -> list[str]:
        try:
            return sorted(os.listdir(self._full(name)))
        except OSError:
            return []

    def open(self, name: str) -> BinaryIO:
        return open(self._full(name), "rb")

    def size(self, name: str) -> int:
        return self._full(name).stat().st_size


class TarFiles(ImageFiles):
    """An image archive, read member by member (never extracted)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.where = str(path)
        try:
            self._tar = tarfile.open(path, "r:*", errors="surrogateescape")
            members = self._tar.getmembers()
        except (tarfile.TarError, EOFError, OSError) as exc:
            raise ImageError(f"{path}: not a readable image archive ({exc})") from None
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
