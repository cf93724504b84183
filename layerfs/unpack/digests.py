"""Content identifiers of layers and images (FORMATS.md section 9).

Digests are ``"<alg>:<hex>"`` strings; only sha256 is produced, sha256 and
sha512 are accepted when verifying.
"""

from __future__ import annotations

import hashlib
import re

from ..errors import ImageError

_DIGEST = re.compile(r"^(sha256|sha512):([0-9a-f]+)$")
_HEX_LENGTH = {"sha256": 64, "sha512": 128}


def parse_digest(digest: str, what: str = "digest") -> tuple[str, str]:
    """(algorithm, hex) of a digest string; fails clearly on anything else."""
    match = _DIGEST.match(digest or "")
    if not match or len(match.group(2)) != _HEX_LENGTH[match.group(1)]:
        raise ImageError(f"{what}: '{digest}' is not a valid digest")
    return match.group(1), match.group(2)


def hex_of(digest: str) -> str:
    return parse_digest(digest)[1]


def sha256_digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def chain_ids(diff_ids: list[str]) -> list[str]:
    """ChainID of each layer: ChainID(L0) = DiffID(L0),
    ChainID(..Ln) = sha256(ChainID(..Ln-1) + " " + DiffID(Ln))."""
    chains: list[str] = []
    for diff_id in diff_ids:
        parse_digest(diff_id, "DiffID")
        chains.append(diff_id if not chains else sha256_digest(f"{chains[-1]} {diff_id}".encode()))
    return chains


def short(digest: str, length: int = 12) -> str:
    """The hex of a digest cut to ``length`` characters, for tables and labels."""
    return digest.partition(":")[2][:length] if ":" in digest else digest[:length]
