"""Platforms of multi-arch images: the host's, parsing ``--platform``, matching index entries.

A platform in an index entry is decoded leniently (a field that is not a
string counts as absent, a ``platform`` that is not an object as no platform):
it only chooses among entries, it is never trusted for anything else.
"""

from __future__ import annotations

import platform as _platform
from dataclasses import dataclass

from ..errors import UsageError

_ARCH = {"x86_64": "amd64", "amd64": "amd64", "aarch64": "arm64", "arm64": "arm64",
         "armv7l": "arm", "armv6l": "arm", "i386": "386", "i686": "386",
         "ppc64le": "ppc64le", "s390x": "s390x", "riscv64": "riscv64"}
_DEFAULT_VARIANT = {"arm64": "v8"}


def host_platform() -> str:
    machine = _platform.machine()
    arch = _ARCH.get(machine, machine)
    variant = {"armv7l": "/v7", "armv6l": "/v6"}.get(machine, "")
    return f"linux/{arch}{variant}"


def parse_platform(text: str) -> tuple[str, str, str]:
    parts = text.split("/")
    if len(parts) not in (2, 3) or not all(parts):
        raise UsageError(f"--platform {text}: expected OS/ARCH[/VARIANT], e.g. linux/arm64")
    return parts[0], parts[1], parts[2] if len(parts) == 3 else ""


@dataclass(frozen=True, slots=True)
class Platform:
    os: str
    architecture: str
    variant: str = ""

    @classmethod
    def decode(cls, value: object) -> Platform | None:
        if not isinstance(value, dict):
            return None
        os_name, arch, variant = (value.get(key) for key in ("os", "architecture", "variant"))
        return cls(os_name if isinstance(os_name, str) else "",
                   arch if isinstance(arch, str) else "",
                   variant if isinstance(variant, str) else "")

    def __str__(self) -> str:
        text = f"{self.os or '?'}/{self.architecture or '?'}"
        return text + (f"/{self.variant}" if self.variant else "")

    def matches(self, wanted: str) -> bool:
        os_name, arch, variant = parse_platform(wanted)
        if self.os != os_name or self.architecture != arch:
            return False
        if not variant:
            return True
        return (self.variant or _DEFAULT_VARIANT.get(arch, "")) == variant


def describe(platform: dict) -> str:
    """``os/arch[/variant]`` of a platform object, "?" for what it lacks."""
    return str(Platform.decode(platform) or Platform("", ""))


def matches(platform: object, wanted: str) -> bool:
    """Whether a platform object (or anything else found in JSON) is the ``wanted`` one."""
    decoded = Platform.decode(platform)
    return decoded is not None and decoded.matches(wanted)
