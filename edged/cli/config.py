"""`edged config check`: validate a config file."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from edged.config import EdgedConfig


def register(commands: argparse._SubParsersAction) -> None:
    config = commands.add_parser("config", help="validate a config file", description="Work with edged's YAML config.")
    sub = config.add_subparsers(title="config commands", metavar="CONFIG_COMMAND")
    p = sub.add_parser(
        "check",
        help="validate; every error names its field and line",
        description="Validate a config "
        "file: unknown keys, wrong types and out-of-range values are reported with the field path and "
        "the YAML line; ${VAR} references must be set in the environment.",
    )
    p.add_argument("file", type=Path)
    p.add_argument("--show", action="store_true", help="print the effective config, defaults filled in, as JSON")
    p.set_defaults(handler=_run_config_check)
    config.set_defaults(handler=lambda _args: config.print_help() or 2)


def _run_config_check(args: argparse.Namespace) -> int:
    from edged.config import load_config, missing_paths

    config = load_config(args.file)  # problems: printed by edged.cli.main, one per line
    for line in missing_paths(config, args.file):  # a config may be meant for another machine: warn
        print(f"warning: {line} (on this machine; `edged run` refuses to start without it)", file=sys.stderr)
    if (unmet := _unmet_floor(config, args.file)) is not None:
        print(f"warning: {unmet}", file=sys.stderr)
    if args.show:
        print(json.dumps(config.model_dump(mode="json"), indent=2))
    else:
        print(
            f"{args.file}: valid (source: {config.source.type}, zoo: {config.zoo.path}, mqtt: "
            f"{config.mqtt.host}:{config.mqtt.port if config.mqtt.enabled else 'disabled'})"
        )
    return 0


def _unmet_floor(config: EdgedConfig, path: Path) -> str | None:
    """The configured accuracy floor, when no variant of the configured zoo reaches it (on the profiles' eval set)."""
    from edged.errors import EdgedError
    from edged.yamlfile import Problem, load_yaml
    from edged.zoo.manifest import MANIFEST_NAME, load_zoo

    floor = config.governor.accuracy_floor
    if floor <= 0 or not (config.zoo.path / MANIFEST_NAME).is_file():
        return None
    try:
        zoo = load_zoo(config.zoo.path, verify_files=False)
    except EdgedError:
        return None  # the zoo's own problems are `edged zoo list`'s to report
    wanted = config.zoo.device_class
    scores = {
        v.id: p.accuracy.map50_95
        for v in zoo.variants
        for device, p in v.profiles.items()
        if p.accuracy is not None and (wanted is None or device == wanted)
    }
    if not scores or floor <= max(scores.values()):
        return None
    best = max(scores, key=lambda v: scores[v])
    line = load_yaml(path).line_of(("governor", "accuracy_floor"))
    message = (
        f"{floor:g} is above every variant of {config.zoo.path} (the most accurate, {best}, has "
        f"{scores[best]:.3f}): the governor will run it below the floor, flagged floor_unmet"
    )
    return str(Problem(str(path), line, "governor.accuracy_floor", message))
