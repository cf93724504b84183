"""Small modules with one job each: each says its job at its top, and a module over
500 lines also says why it is that long.

Its docstring has a line starting "Longer than 500 lines because" (the reason a
reader would otherwise ask for). A module being split on a branch can be
listed in SPLITTING until that lands (none is now).
"""

from __future__ import annotations

import ast
from pathlib import Path

import layerfs

PACKAGE = Path(layerfs.__file__).parent
LIMIT = 500
REASON = "Longer than 500 lines because"

SPLITTING: set[str] = set()


def _too_long_without_reason() -> list[str]:
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        text = path.read_text()
        lines = text.count("\n")
        if lines <= LIMIT:
            continue
        name = str(path.relative_to(PACKAGE.parent))
        docstring = ast.get_docstring(ast.parse(text, name)) or ""
        stated = any(line.strip().startswith(REASON) for line in docstring.splitlines())
        if not stated and name not in SPLITTING:
            found.append(f"{name}: {lines} lines, and no '{REASON} ...' line in its docstring")
    return found


def test_long_modules_say_why():
    found = _too_long_without_reason()
    assert not found, "\n".join(found)


def test_the_split_list_names_only_long_modules():
    for name in SPLITTING:
        path = PACKAGE.parent / name
        assert path.exists() and path.read_text().count("\n") > LIMIT, \
            f"{name} is split (or gone): drop it from SPLITTING"


def test_every_module_states_its_job():
    silent = [str(path.relative_to(PACKAGE.parent)) for path in sorted(PACKAGE.rglob("*.py"))
              if not (ast.get_docstring(ast.parse(path.read_text(), str(path))) or "").strip()]
    assert not silent, "modules without a docstring stating their job: " + ", ".join(silent)
