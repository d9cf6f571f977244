"""`edged completion SHELL`: a tab-completion script for every command and option, generated from the parser by
shtab, so it cannot drift from the CLI. deploy/install.sh installs the bash one."""

from __future__ import annotations

import argparse
from pathlib import Path

SHELLS = ("bash", "zsh", "tcsh")


def register(commands: argparse._SubParsersAction) -> None:
    p = commands.add_parser(
        "completion",
        help="print a shell completion script (bash, zsh, tcsh)",
        description="Print a tab-completion script for edged's commands and options. bash: "
        "`edged completion bash | sudo tee /etc/bash_completion.d/edged` (deploy/install.sh does it), or "
        '`source <(edged completion bash)` in ~/.bashrc; zsh: `edged completion zsh > "${fpath[1]}/_edged"`.',
    )
    p.add_argument("shell", choices=SHELLS)
    p.set_defaults(handler=_print_completion)


def _print_completion(args: argparse.Namespace) -> int:
    import shtab

    from edged.cli import build_parser

    parser = build_parser()
    _complete_paths_as_files(parser, shtab.FILE)
    print(shtab.complete(parser, shell=args.shell), end="")
    return 0


def _complete_paths_as_files(parser: argparse.ArgumentParser, files: object) -> None:
    """Every argument typed Path (sources, configs, zoos, outputs) completes file and directory names."""
    for action in parser._actions:
        if action.type is Path:
            action.complete = files  # type: ignore[attr-defined]  # shtab's hook on argparse actions
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                _complete_paths_as_files(sub, files)
