from __future__ import annotations

import pytest

from .sandbox import Sandbox


@pytest.fixture
def sandbox():
    box = Sandbox()
    try:
        yield box
    finally:
        box.cleanup()
