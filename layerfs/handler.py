"""The one wrapper every filesystem handler runs in.

:func:`request` logs the request under ``--debug``, waits for an index whose
layers are still arriving (:class:`~layerfs.deferred.DeferredIndex`) unless
the request is one answered at once, and turns any exception into a
:class:`~layerfs.fuse.api.FUSEError`: errno from
:func:`~layerfs.errors.errno_for`, unexpected ones EIO with a logged
traceback (a bug fails one request, never the daemon).
"""

from __future__ import annotations

import functools
import logging
import time
from typing import Any, Awaitable, Callable, TypeVar

from .errors import LayerfsError, errno_for
from .fuse.api import Context, FUSEError

log = logging.getLogger("layerfs.fs")

F = TypeVar("F", bound=Callable[..., Awaitable[Any]])


def request(handler: F) -> F:
    """Log the request under --debug and turn any exception into a FUSE errno."""
    name = handler.__name__

    @functools.wraps(handler)
    async def wrapper(self: Any, *args: Any) -> Any:
        self.last_request = time.monotonic()
        if self.debug:
            log.debug("%s%r", name, _shown_args(args))
        try:
            if self._deferred is not None and not self._answers_early(name, args):
                await self.until_ready()
            return await handler(self, *args)
        except FUSEError:
            raise
        except (OSError, LayerfsError) as exc:
            if self.debug:
                log.debug("%s failed: %s", name, exc)
            raise FUSEError(errno_for(exc)) from None
        except Exception as exc:  # noqa: BLE001 - a bug must fail one request, not the daemon
            log.exception("unexpected error in %s%r", name, args)
            raise FUSEError(errno_for(exc)) from None

    return wrapper  # type: ignore[return-value]


def _shown_args(args: tuple) -> tuple:
    """A request's arguments for the debug log: without the context, data abridged."""
    if args and isinstance(args[-1], Context):
        args = args[:-1]
    return tuple(f"<{len(arg)} bytes>" if isinstance(arg, (bytes, memoryview)) and len(arg) > 64
                 else arg for arg in args)
