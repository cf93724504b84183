"""Platforms of multi-arch images: the host's, parsing ``--platform``, matching descriptors."""

from __future__ import annotations

import platform as _platform

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


def describe(platform: dict) -> str:
    text = f"{platform.get('os', '?')}/{platform.get('architecture', '?')}"
    return text + (f"/{platform['variant']}" if platform.get("variant") else "")


def matches(platform: dict | None, wanted: str) -> bool:
    if not isinstance(platform, dict):
        return False
    os_name, arch, variant = parse_platform(wanted)
    if platform.get("os") != os_name or platform.get("architecture") != arch:
        return False
    if not variant:
        return True
    have = platform.get("variant") or _DEFAULT_VARIANT.get(arch, "")
    return have == variant
