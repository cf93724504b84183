"""Helpers shared by the test packages."""

import tarfile


def extraction_filter(name: str) -> dict:
    """``filter=name`` for TarFile.extract*, where this Python has extraction filters
    (3.12, and 3.11.4+); older ones extract as that filter's most permissive form did."""
    return {"filter": name} if hasattr(tarfile, "data_filter") else {}
