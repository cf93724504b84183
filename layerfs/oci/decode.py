"""The hand decoder's primitives: JSON in, checked Python values out, one clear error each.

Manifests, indexes and configs come from strangers: a field of the wrong type
must end in an :class:`ImageError` naming the file (``where``) and the field,
never in an ``AttributeError`` deep inside a reader. ``where`` names the file
as the user knows it (``IMAGE: index.json``, ``IMAGE: manifest sha256:...``);
``path`` is the field's place inside it (``manifests[2].digest``), added to
the message as ``(at PATH)``.
"""

from __future__ import annotations

import json

from ..errors import ImageError


def at(path: str) -> str:
    """The message suffix naming a field's place in its document."""
    return f" (at {path})" if path else ""


def field(path: str, key: str | int) -> str:
    """The path of ``key`` inside the value at ``path``: ``a.b``, ``a[3]``."""
    if isinstance(key, int):
        return f"{path}[{key}]"
    return f"{path}.{key}" if path else key


def parse_json(data: bytes, where: str, name: str) -> object:
    """JSON from an image file; any malformed input is one clear ImageError."""
    try:
        return json.loads(data)
    except RecursionError:
        raise ImageError(f"{where}: {name} is not valid JSON (nested too deeply)") from None
    except ValueError as exc:  # JSONDecodeError, UnicodeDecodeError
        reason = str(exc).splitlines()[0][:200] if str(exc) else type(exc).__name__
        raise ImageError(f"{where}: {name} is not valid JSON ({reason})") from None


def parse_object(data: bytes, where: str, name: str) -> dict:
    """A JSON document that must be an object (every manifest, index and config is)."""
    document = parse_json(data, where, name)
    if not isinstance(document, dict):
        raise ImageError(f"{where}: {name} is not a JSON object")
    return document


def need_object(value: object, where: str, what: str, path: str = "") -> dict:
    if not isinstance(value, dict):
        raise ImageError(f"{where}: {what} is not an object{at(path)}")
    return value


def need_list(value: object, where: str, what: str, path: str = "") -> list:
    if not isinstance(value, list):
        raise ImageError(f"{where}: {what} is not a list{at(path)}")
    return value


def need_string(value: object, where: str, what: str, path: str = "") -> str:
    if not isinstance(value, str):
        raise ImageError(f"{where}: {what} is not a string{at(path)}")
    return value


def strings(value: object, where: str, what: str, path: str = "") -> list[str]:
    """A list of strings; null is an empty list."""
    if value is None:
        return []
    items = need_list(value, where, what, path)
    if not all(isinstance(item, str) for item in items):
        raise ImageError(f"{where}: {what} is not a list of strings{at(path)}")
    return items


def optional(value: dict, key: str, kind: type, name: str, where: str, path: str) -> object:
    """``value[key]`` when present and not null, checked to be ``kind`` (never a bool for an
    int); None when absent."""
    item = value.get(key)
    if item is not None and (not isinstance(item, kind) or isinstance(item, bool)):
        raise ImageError(f"{where}: descriptor '{key}' is not {name}{at(field(path, key))}")
    return item
