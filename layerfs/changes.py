"""What one change of a writable merged tree answers: its value and the inodes it touched.

A change (a create, a rename, a setattr...) can alter entries the request
did not name: copying a lower directory up changes how its link count
shows, removing one name of a hard-linked file changes the others' link
count. Those inodes are "touched": the caller tells the kernel to drop what
it cached of them. Each write method of :class:`~layerfs.upper.Upper` is
wrapped in :func:`one_change`, which gathers them while it runs and returns
them with its answer as a :class:`Change`; one that fails after such a side
effect (a copy-up stays done) raises :class:`FailedChange`, which carries
them too.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Callable, Concatenate, Generic, ParamSpec, TypeVar

T = TypeVar("T")
P = ParamSpec("P")
S = TypeVar("S", bound="Changing")


@dataclass(frozen=True, slots=True)
class Change(Generic[T]):
    """The answer of one change, and the inodes it touched on the side."""

    value: T
    touched: frozenset[int] = frozenset()


class FailedChange(OSError):
    """A change that failed after touching inodes: the cause's errno, and those inodes."""

    def __init__(self, cause: OSError, touched: frozenset[int]) -> None:
        super().__init__(cause.errno, cause.strerror, cause.filename)
        self.touched = touched


class Changing:
    """Something whose changes run one at a time (the caller holds a lock), each
    gathering the inodes it touches in :attr:`_touched`."""

    def __init__(self) -> None:
        self._touched: set[int] = set()
        self._changing = False

    def _touch(self, ino: int) -> None:
        self._touched.add(ino)


def one_change(method: Callable[Concatenate[S, P], T]) -> Callable[Concatenate[S, P], Change[T]]:
    """Make ``method`` one change: it returns a :class:`Change` of its answer."""

    @functools.wraps(method)
    def wrapper(self: S, *args: P.args, **kwargs: P.kwargs) -> Change[T]:
        # A change calls the unwrapped steps of others, never another change.
        assert not self._changing, f"{method.__name__} inside another change"
        self._touched, self._changing = set(), True
        try:
            value = method(self, *args, **kwargs)
        except OSError as exc:
            if self._touched:
                raise FailedChange(exc, frozenset(self._touched)) from exc
            raise
        finally:
            self._changing = False
        return Change(value, frozenset(self._touched))

    return wrapper
