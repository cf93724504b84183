"""The browser's slow questions, answered in a separate process.

The marks of a view walk two whole trees, a filter walks one, the usage figures
every layer, the layer survey every directory: in a thread of the UI's process they
would hold the GIL and make every key wait (0.5 s a keystroke on a 200k-entry
image). A process of its own answers them instead, on another core; it keeps the
trees it has read (keyed by their layer roots) for the next question. The UI's
process only reads what it shows.

Every function here runs in that process; :class:`Background` submits to it (a
``multiprocessing`` pool, which unlike ``concurrent.futures`` can be stopped mid-task
when the user quits).
"""

from __future__ import annotations

import dataclasses
import multiprocessing
import os
from concurrent.futures import Future

from ..explore import usage
from ..images import Image
from ..layer import Layer
from ..unpack.survey import survey_dir
from . import model
from .model import Stacks, View

_read: dict[tuple, list[Stacks]] = {}
"""The images' trees read so far in this (the background) process, by layer roots."""

Sides = tuple[tuple[Layer, ...], ...]


def portable(layer: Layer) -> Layer:
    """``layer`` as another process can take it: its plain facts, without a lazy
    layer's fetcher (its files are read as they are on disk)."""
    return dataclasses.replace(layer, content=None)


def _stacks(sides: Sides) -> list[Stacks]:
    key = tuple(tuple(layer.root for layer in side) for side in sides)
    if key not in _read:
        _read[key] = [Stacks(Image(layers=list(side)), "") for side in sides]
    return _read[key]


def marks(sides: Sides, view: View) -> model.Marks:
    """The marks of ``view`` (:func:`model.changes_of`)."""
    return model.Marks(model.changes_of(_stacks(sides), view))


def find(sides: Sides, view: View, removed: dict[bytes, list[bytes]],
         text: str) -> tuple[set[bytes], set[bytes]]:
    """:func:`model.find` over the view's tree; ``removed``: the names the view removed,
    by directory (the view's marks, but for what the filter needs of them)."""
    marks = model.Marks()
    marks.removed = {parent: dict.fromkeys(names) for parent, names in removed.items()}  # type: ignore[misc]
    return model.find(model.tree_of(_stacks(sides), view), marks, text)


def measure(sides: Sides, side: int) -> usage.Report:
    stacks = _stacks(sides)[side]
    return usage.measure(stacks.as_of(stacks.top))


def survey(root: str) -> dict:
    return survey_dir(root)


def _lower_priority() -> None:
    os.nice(5)  # the figures wait: the UI and the marks come first on a busy machine


def _submit(pool, function, *args) -> Future:
    """``function(*args)`` in ``pool``, as a future the event loop can await."""
    future: Future = Future()
    future.set_running_or_notify_cancel()

    def failed(exc: BaseException) -> None:
        future.set_exception(exc)

    pool.apply_async(function, args, callback=future.set_result, error_callback=failed)
    return future


class Background:
    """The processes answering the slow questions for one browser: one for what the
    user waits for (marks, filter), one for the figures (survey, usage), so a long
    usage walk never delays the marks of the layer just selected."""

    def __init__(self, images: list[Image]) -> None:
        self.sides = tuple(tuple(portable(layer) for layer in image.layers) for image in images)
        context = multiprocessing.get_context("spawn")  # no fork of a threaded process
        self._asked = context.Pool(1)
        self._figures = context.Pool(1, initializer=_lower_priority)

    def marks(self, view: View) -> Future:
        return _submit(self._asked, marks, self.sides, view)

    def find(self, view: View, removed: dict[bytes, list[bytes]], text: str) -> Future:
        return _submit(self._asked, find, self.sides, view, removed, text)

    def measure(self, side: int) -> Future:
        return _submit(self._figures, measure, self.sides, side)

    def survey(self, side: int, position: int) -> Future:
        return _submit(self._figures, survey, self.sides[side][position].root)

    def close(self) -> None:
        """Stop both processes now, whatever they are doing."""
        for pool in (self._asked, self._figures):
            pool.terminate()
            pool.join()
