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

import multiprocessing
import os
from concurrent.futures import Future

from ..explore import usage
from ..explore.diff import TreeDiff
from ..images import Image
from ..index import PathIndex
from ..layer import Layer
from ..unpack.survey import survey_dir
from . import model
from .model import COMPARE, View

_trees: dict[tuple[str, ...], PathIndex] = {}
"""The trees read so far in this (the background) process."""


def portable(layer: Layer) -> Layer:
    """``layer`` as another process can take it: only plain facts in ``extra`` (a lazy
    layer's fetcher stays behind; its files are read as they are on disk)."""
    extra = {key: value for key, value in layer.extra.items()
             if isinstance(value, (str, int, float, bool, type(None)))}
    return Layer(root=layer.root, label=layer.label, diff_id=layer.diff_id,
                 chain_id=layer.chain_id, created_by=layer.created_by, extra=extra,
                 upper=layer.upper)


def _tree(layers: tuple[Layer, ...]) -> PathIndex:
    key = tuple(layer.root for layer in layers)
    tree = _trees.get(key)
    if tree is None:
        tree = _trees[key] = PathIndex(list(layers))
    return tree


def _prefix(layers: tuple[Layer, ...], position: int) -> tuple[Layer, ...]:
    return layers[:position + 1]


def marks(sides: tuple[tuple[Layer, ...], ...], view: View) -> model.Marks:
    """The marks of ``view``: what :func:`model.changes_of` gives, computed here."""
    if view.position == COMPARE:
        a, b = sides
        return model.Marks(TreeDiff(_tree(a), _tree(b)).changes())
    layers = sides[view.side]
    before = None
    if view.position > 0:
        before = _tree(_prefix(layers, 0 if view.aggregated else view.position - 1))
    return model.Marks(TreeDiff(before, _tree(_prefix(layers, view.position))).changes())


def find(layers: tuple[Layer, ...], removed: dict[bytes, list[bytes]],
         text: str) -> tuple[set[bytes], set[bytes]]:
    """What :func:`model.find` gives for the tree of ``layers``; ``removed``: the names
    the view removed, by directory."""
    marks = model.Marks()
    marks.removed = {parent: dict.fromkeys(names) for parent, names in removed.items()}  # type: ignore[misc]
    return model.find(_tree(layers), marks, text)


def measure(layers: tuple[Layer, ...]) -> usage.Report:
    return usage.measure(_tree(layers))


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
        if view.position == COMPARE:
            layers = self.sides[1]
        else:
            layers = _prefix(self.sides[view.side], view.position)
        return _submit(self._asked, find, layers, removed, text)

    def measure(self, side: int) -> Future:
        return _submit(self._figures, measure, self.sides[side])

    def survey(self, side: int, position: int) -> Future:
        return _submit(self._figures, survey, self.sides[side][position].root)

    def close(self) -> None:
        """Stop both processes now, whatever they are doing."""
        for pool in (self._asked, self._figures):
            pool.terminate()
            pool.join()
