"""Installing: pyproject's metadata in today's form, and `make install` putting working
commands on PATH."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def test_license_is_an_spdx_string_with_a_setuptools_that_reads_it():
    """The table form printed setuptools' deprecation banner at every install."""
    tomllib = pytest.importorskip("tomllib")  # Python >= 3.11
    project = tomllib.loads((REPO / "pyproject.toml").read_text())
    assert project["project"]["license"] == "Apache-2.0"
    floor = next(r for r in project["build-system"]["requires"] if r.startswith("setuptools"))
    assert int(floor.partition(">=")[2].split(".")[0]) >= 77, floor


def test_make_install_links_the_commands_into_bindir(tmp_path):
    if shutil.which("make") is None:
        pytest.skip("make is not installed")
    venv = Path(sys.executable).parent.parent
    if not (venv / "bin" / "layerfs").exists():
        pytest.skip("the tests do not run from the project's venv (no bin/layerfs beside python)")
    # VENV= the venv the tests run from; its .installed stamp keeps make from rebuilding it.
    result = subprocess.run(["make", "-s", "-C", str(REPO), "install", f"VENV={venv}",
                             f"BINDIR={tmp_path / 'bin'}", "APT_PACKAGES="],
                            capture_output=True, text=True, timeout=600,
                            env=dict(os.environ, PATH=os.environ.get("PATH", "")))
    assert result.returncode == 0, result.stdout + result.stderr
    version = subprocess.run([str(tmp_path / "bin" / "layerfs"), "--version"],
                             capture_output=True, text=True, cwd=tmp_path)
    assert version.returncode == 0 and version.stdout.startswith("layerfs "), version
    assert (tmp_path / "bin" / "layerfs-overlay").resolve() == venv / "bin" / "layerfs-overlay"
    assert "not on your PATH" in result.stdout
    subprocess.run(["make", "-s", "-C", str(REPO), "uninstall", f"VENV={venv}",
                    f"BINDIR={tmp_path / 'bin'}"], check=True, capture_output=True)
    assert list((tmp_path / "bin").iterdir()) == []
