"""``layerfs completion bash|zsh|tcsh`` and ``layerfs man``: shell completion and the
manual page, both generated from the command line parser (shtab, argparse-manpage),
so they always list the commands and options ``--help`` shows.

    source <(layerfs completion bash)         # or into ~/.local/share/bash-completion/completions/layerfs
    layerfs completion zsh > ~/.zfunc/_layerfs
    layerfs man > layerfs.1 && man -l layerfs.1   # or: make man
"""

from __future__ import annotations

import argparse
import sys

SHELLS = ("bash", "zsh", "tcsh")
# Arguments that name files or directories, completed as such.
_FILE_ARGS = {"image", "upper", "work", "lower", "into", "output", "log", "authfile", "path"}
_DIR_ARGS = {"mountpoint", "cache_dir", "tmp_dir", "layer"}


def register(commands: argparse._SubParsersAction, parser: argparse.ArgumentParser) -> None:
    """Add ``completion`` and ``man`` to ``commands``, the subcommands of ``parser``: the
    whole command line, which both are generated from."""
    completion = commands.add_parser(
        "completion", help="print the shell completion script (bash, zsh, tcsh)",
        description="Print a completion script for SHELL, generated from the parser: "
                    "'source <(layerfs completion bash)' in ~/.bashrc, or save the zsh one "
                    "as _layerfs in a directory of $fpath.")
    completion.add_argument("shell", choices=SHELLS, metavar="SHELL",
                            help="bash, zsh or tcsh")
    completion.set_defaults(run=_cmd_completion, whole_parser=parser)
    man = commands.add_parser("man", help="print the manual page (roff)",
                              description="Print layerfs(1), generated from the parser: "
                                          "'layerfs man > layerfs.1; man -l layerfs.1'.")
    man.set_defaults(run=_cmd_man, whole_parser=parser)


def _mark_paths(parser: argparse.ArgumentParser) -> None:
    import shtab

    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                _mark_paths(sub)
        elif action.dest in _DIR_ARGS:
            action.complete = shtab.DIRECTORY  # type: ignore[attr-defined]
        elif action.dest in _FILE_ARGS:
            action.complete = shtab.FILE  # type: ignore[attr-defined]


def _cmd_completion(args: argparse.Namespace) -> int:
    import shtab

    parser = args.whole_parser
    _mark_paths(parser)
    print(shtab.complete(parser, shell=args.shell))
    return 0


def _cmd_man(args: argparse.Namespace) -> int:
    from argparse_manpage.manpage import Manpage

    from . import __version__

    parser = args.whole_parser
    page = Manpage(parser, _data={"version": __version__, "project_name": "layerfs",
                                  "manual_title": "layerfs manual",
                                  "description": "a userspace union filesystem for "
                                                 "container images"})
    sys.stdout.write(str(page))
    return 0
