"""Failures talking to a registry. Each message names the image reference it concerns."""

from __future__ import annotations

from ..errors import ImageError


class RegistryError(ImageError):
    """The registry refused a request, failed it, or served something wrong."""


class AuthError(RegistryError):
    """401/403: no credentials, wrong credentials, or no access to the repository."""


class NotFoundError(RegistryError):
    """404: no such repository, tag, manifest or blob."""


class TransientError(RegistryError):
    """A failure worth retrying (connection reset or refused, 5xx, 429); raised once
    the retries are used up."""


class UnreachableError(RegistryError):
    """Nothing answers at the registry's address (connection refused, no route) and it
    never answered this process: failed at once, not retried."""


class Cancelled(RegistryError):
    """Another layer's download failed or the user interrupted the pull."""
