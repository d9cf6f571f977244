"""The `edged` command. Thin: parse, call into the packages, print.

Each command group is a module here with a `register(commands)` function; errors a user can fix (EdgedError)
print as one clear message without a traceback.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Sequence

from edged import __version__
from edged.cli import completion, config, detect, governor, power, run, watch, zoo
from edged.errors import ConfigError, EdgedError

# TFLite's C++ logging would otherwise print an INFO line per interpreter on stderr.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

COMMAND_GROUPS = [run, detect, watch, zoo, governor, power, config, completion]

EPILOG = """examples:
  edged run                          the demo: shipped zoo, bundled clip, simulated battery, MQTT on :1883
  edged run -c /etc/edged/edged.yaml
  edged watch --device demo
  edged detect street.jpg --zoo deploy/zoos/coco-reference --variant yolox-nano-416
  edged detect vtest.avi --annotate out.mp4 --json > detections.jsonl
  edged zoo list --zoo model_zoo
  edged zoo eval --data ../shared/data/coco-val-dev --zoo deploy/zoos/coco-reference
  edged config check /etc/edged/edged.yaml
  source <(edged completion bash)    tab completion in this shell

Exit status: 0 ok, 1 a problem with the input (printed), 2 bad usage, 70 a thread of `edged run` died of an
unexpected error (logged with its traceback; systemd restarts the service)."""


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose > 1 else logging.INFO if args.verbose else logging.WARNING,
        format="%(levelname)s %(name)s: %(message)s",
    )
    if not hasattr(args, "handler"):
        parser.print_help()
        return 2
    try:
        return int(args.handler(args) or 0)
    except ConfigError as exc:  # a document with problems: one line each, with its line number
        count = len(exc.problems)
        print(f"edged: error: {count} problem{'s' if count != 1 else ''}:", file=sys.stderr)
        for problem in exc.problems:
            print(f"  {problem}", file=sys.stderr)
        return 1
    except EdgedError as exc:
        print(f"edged: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:  # `edged detect ... | head`
        sys.stderr.close()
        return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="edged",
        description="Battery-aware inference daemon for edge cameras: runs the most accurate detector variant "
        "the device can afford and publishes detections over MQTT.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"edged {__version__}")
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more log output (-vv: debug)")
    commands = parser.add_subparsers(title="commands", metavar="COMMAND")
    for group in COMMAND_GROUPS:
        group.register(commands)
    return parser
