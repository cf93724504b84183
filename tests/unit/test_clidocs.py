"""Shell completion and the man page come from the parser: every command is in both."""

from __future__ import annotations

import shutil
import subprocess

import pytest

from layerfs.cli import _build_parser, _command_names
from tests.support.mounting import run_layerfs

COMMANDS = sorted(_command_names(_build_parser()))


def test_every_command_is_known():
    assert {"mount", "inspect", "images", "mounts", "export", "cat", "ls", "completion",
            "man"} <= set(COMMANDS)


def _bash_complete(script: str, words: list[str]) -> list[str]:
    """COMPREPLY of the completion function for ``words`` (the last is being typed)."""
    line = " ".join(words)
    program = (f"{script}\nCOMP_WORDS=({line}); COMP_CWORD={len(words) - 1}; "
               f"COMP_LINE='{line}'; COMP_POINT={len(line)}; "
               "_shtab_layerfs layerfs; printf '%s\\n' \"${COMPREPLY[@]}\"")
    result = subprocess.run(["bash", "-c", program], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    return result.stdout.split()


def test_bash_completion_completes_commands_and_options():
    result = run_layerfs("completion", "bash")
    assert result.returncode == 0, result.stderr
    assert set(_bash_complete(result.stdout, ["layerfs", ""])) >= set(COMMANDS)
    assert _bash_complete(result.stdout, ["layerfs", "exp"]) == ["export"]
    assert "--upper" in _bash_complete(result.stdout, ["layerfs", "mount", "--up"])
    assert "--exit-code" in _bash_complete(result.stdout, ["layerfs", "diff", "--ex"])


def test_zsh_and_tcsh_completion_scripts():
    for shell, marker in (("zsh", "#compdef layerfs"), ("tcsh", "complete layerfs")):
        result = run_layerfs("completion", shell)
        assert result.returncode == 0 and marker in result.stdout
        assert all(command in result.stdout for command in COMMANDS)
    if shutil.which("zsh"):
        script = run_layerfs("completion", "zsh").stdout
        assert subprocess.run(["zsh", "-n"], input=script, text=True).returncode == 0


def test_man_page_lists_every_command_and_renders():
    page = run_layerfs("man").stdout
    assert page.startswith(".TH LAYERFS \"1\"")
    for command in COMMANDS:
        assert f"'layerfs {command}'" in page, command
    assert "\\-\\-exit\\-code" in page and "\\-\\-upper" in page
    if not shutil.which("groff"):
        pytest.skip("groff is not installed")
    text = subprocess.run(["groff", "-man", "-Tutf8"], input=page, capture_output=True,
                          text=True, check=True).stdout
    assert "layerfs export" in text.replace("\u2010", "-")
