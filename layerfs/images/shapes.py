"""Checking the shape of JSON read from an image before using it.

Manifests, indexes and configs come from strangers: a field of the wrong
type must end in an :class:`ImageError` naming the file and the field,
never in an ``AttributeError`` deep inside a reader.
"""

from __future__ import annotations

from ..errors import ImageError


def need_object(value: object, where: str, what: str) -> dict:
    if not isinstance(value, dict):
        raise ImageError(f"{where}: {what} is not an object")
    return value


def need_list(value: object, where: str, what: str) -> list:
    if not isinstance(value, list):
        raise ImageError(f"{where}: {what} is not a list")
    return value


def need_string(value: object, where: str, what: str) -> str:
    if not isinstance(value, str):
        raise ImageError(f"{where}: {what} is not a string")
    return value


def strings(value: object, where: str, what: str) -> list[str]:
    """A list of strings; null is an empty list."""
    if value is None:
        return []
    items = need_list(value, where, what)
    if not all(isinstance(item, str) for item in items):
        raise ImageError(f"{where}: {what} is not a list of strings")
    return items


def descriptor(value: object, where: str) -> dict:
    """An OCI content descriptor: ``digest`` a string, the optional fields of their types."""
    item = need_object(value, where, "descriptor")
    need_string(item.get("digest"), where, "descriptor 'digest'")
    for key, kind, name in (("mediaType", str, "a string"), ("annotations", dict, "an object"),
                            ("size", int, "a number")):
        if item.get(key) is not None and (not isinstance(item[key], kind)
                                          or isinstance(item[key], bool)):
            raise ImageError(f"{where}: descriptor '{key}' is not {name}")
    size = item.get("size")
    if size is not None and size < 0:
        raise ImageError(f"{where}: descriptor 'size' is negative")
    annotations = item.get("annotations") or {}
    if not all(isinstance(v, str) for v in annotations.values()):
        raise ImageError(f"{where}: descriptor annotations are not strings")
    return item
