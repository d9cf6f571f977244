"""The `edged` command. Thin: parse, call into the packages, print. Errors a user can fix print without a traceback."""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from pydantic import TypeAdapter

from edged import __version__
from edged.errors import EdgedError

if TYPE_CHECKING:  # the handlers import what they use, so `edged --help` stays fast
    from edged.vision.engines import EngineOptions
    from edged.vision.postprocess import PostprocessOptions
    from edged.zoo.manifest import Zoo

# TFLite's C++ logging would otherwise print an INFO line per interpreter on stderr.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

EPILOG = """examples:
  edged detect street.jpg --zoo deploy/zoos/coco-reference --variant yolox-nano-416
  edged detect vtest.avi --annotate out.mp4 --json > detections.jsonl
  edged zoo list --zoo model_zoo
  edged zoo eval --data ../shared/data/coco-val-dev --zoo deploy/zoos/coco-reference
  edged config check /etc/edged/edged.yaml

Exit status: 0 ok, 1 a problem with the input (printed), 2 bad usage."""


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
    _add_detect(commands)
    _add_zoo(commands)
    _add_config(commands)
    return parser


# --- edged detect -------------------------------------------------------------------------------------------------


def _add_detect(commands: argparse._SubParsersAction) -> None:
    p = commands.add_parser(
        "detect",
        help="one-shot detection on an image, a folder or a video",
        description="Run one variant over an image, every image in a folder, or every frame of a video. "
        "Prints one line per frame; with --json one JSON object per line (keys: frame, source, variant, "
        "latency_ms, width, height, objects[label, class_id, score, box=[x1,y1,x2,y2] normalised 0..1]).",
    )
    p.add_argument("source", type=Path, help="image file, folder of images, or video file")
    _add_zoo_arg(p)
    p.add_argument("--variant", help="variant id (default: the zoo's first variant)")
    p.add_argument("--json", action="store_true", help="JSON lines on stdout")
    p.add_argument(
        "--annotate",
        type=Path,
        metavar="OUT",
        help="write the frames with boxes drawn (image, folder or .mp4/.avi)",
    )
    p.add_argument("--max-frames", type=_positive_int, help="stop after this many frames")
    _add_detection_args(p, score=0.35, nms=0.5)
    p.set_defaults(handler=_run_detect)


def _run_detect(args: argparse.Namespace) -> int:
    from edged.detect import detect_frames
    from edged.sources import FileSource

    source = FileSource(args.source)
    zoo = _load_zoo(args.zoo)
    variant_id = args.variant or zoo.variants[0].id
    detector = zoo.open_detector(variant_id, _engine_options(args), _postprocess(args))
    count = 0
    for report in detect_frames(source, detector, variant_id, args.annotate):
        if args.json:
            print(report.model_dump_json(), flush=False)
        else:
            found = ", ".join(f"{o.label} {o.score:.2f}" for o in report.objects[:8])
            more = f" +{len(report.objects) - 8}" if len(report.objects) > 8 else ""
            print(f"{report.source}: {len(report.objects)} objects ({report.latency_ms:.1f} ms) {found}{more}")
        count += 1
        if args.max_frames and count >= args.max_frames:
            break
    sys.stdout.flush()
    if args.annotate:
        print(f"annotated output: {args.annotate}", file=sys.stderr)
    if source.skipped:
        print(
            f"edged: {len(source.skipped)} of {count + len(source.skipped)} images could not be read:",
            file=sys.stderr,
        )
        for line in source.skipped:
            print(f"  {line}", file=sys.stderr)
        return 1
    return 0


# --- edged zoo ----------------------------------------------------------------------------------------------------


def _add_zoo(commands: argparse._SubParsersAction) -> None:
    zoo = commands.add_parser(
        "zoo",
        help="the variant family: inspect and measure",
        description="Inspect and measure the variant family of a model zoo.",
    )
    sub = zoo.add_subparsers(title="zoo commands", metavar="ZOO_COMMAND")

    p = sub.add_parser(
        "list",
        help="variants and their measured profiles",
        description="List a zoo's variants. "
        "The manifest, labels, files and sha256 are always verified; --check also opens every model "
        "and checks its input and outputs against the manifest.",
    )
    _add_zoo_arg(p)
    p.add_argument("--json", action="store_true", help="one JSON document")
    p.add_argument("--check", action="store_true", help="open every variant and check it against its manifest entry")
    p.set_defaults(handler=_run_zoo_list)

    p = sub.add_parser(
        "eval",
        help="COCO mAP of variants on a labelled set",
        description="Measure COCO mAP50-95, "
        "mAP50 and per-class AP (pycocotools) on a dataset in YOLO layout (images/, labels/, "
        "classes.txt) or a COCO JSON file. Model labels and dataset classes are matched by name; "
        "only shared classes are scored.",
    )
    _add_zoo_arg(p)
    p.add_argument("--data", type=Path, required=True, help="YOLO dataset directory, or COCO annotations .json")
    p.add_argument("--images", type=Path, help="images directory for a COCO .json (default: next to it)")
    p.add_argument("--variant", action="append", help="variant id (repeatable; default: every variant)")
    p.add_argument("--classes", type=_csv, help="comma-separated class names to score (default: all shared)")
    p.add_argument("--json", action="store_true", help="JSON: a list of reports")
    eval_defaults = _eval_postprocess_defaults()
    _add_detection_args(p, score=eval_defaults.score_threshold, nms=eval_defaults.nms_iou)
    p.set_defaults(handler=_run_zoo_eval)
    zoo.set_defaults(handler=lambda _args: zoo.print_help() or 2)


def _run_zoo_list(args: argparse.Namespace) -> int:
    from edged.zoo.report import check_variants, list_variants, render_table

    zoo = _load_zoo(args.zoo)
    listing = list_variants(zoo)
    failures: dict[str, str] = check_variants(zoo, _engine_options(args)) if args.check else {}
    if args.json:
        for entry in listing.variants:
            entry.check = ("failed: " + failures[entry.id]) if entry.id in failures else ("ok" if args.check else None)
        print(listing.model_dump_json(indent=2))
    else:
        print(render_table(listing))
        for variant_id, reason in failures.items():
            print(f"\n{variant_id}: FAILED: {reason}", file=sys.stderr)
        if args.check and not failures:
            print(f"\nall {len(listing.variants)} variants load and match their manifest entries")
    return 1 if failures else 0


def _run_zoo_eval(args: argparse.Namespace) -> int:
    from edged.zoo.datasets import open_eval_set
    from edged.zoo.eval import EvalReport, evaluate
    from edged.zoo.report import render_eval_table

    zoo = _load_zoo(args.zoo)
    variant_ids = args.variant or [v.id for v in zoo.variants]
    for variant_id in variant_ids:
        zoo.variant(variant_id)  # fail on a typo before minutes of work
    reports = []
    for variant_id in variant_ids:
        detector = zoo.open_detector(variant_id, _engine_options(args), _postprocess(args))
        reports.append(
            evaluate(
                detector,
                open_eval_set(args.data, args.images),
                variant_id,
                args.classes,
                progress=not args.json,
            )
        )
        detector.close()
    if args.json:
        print(TypeAdapter(list[EvalReport]).dump_json(reports, indent=2).decode())
    else:
        print(render_eval_table(reports, args.classes))
    return 0


# --- edged config -------------------------------------------------------------------------------------------------


def _add_config(commands: argparse._SubParsersAction) -> None:
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
    from edged.config import load_config
    from edged.errors import ConfigError

    try:
        config = load_config(args.file)
    except ConfigError as exc:
        count = len(exc.problems)
        print(f"{args.file}: {count} problem{'s' if count != 1 else ''}", file=sys.stderr)
        for problem in exc.problems:
            print(f"  {problem}", file=sys.stderr)
        return 1
    if args.show:
        print(json.dumps(config.model_dump(mode="json"), indent=2))
    else:
        print(
            f"{args.file}: valid (source: {config.source.type}, zoo: {config.zoo.path}, mqtt: "
            f"{config.mqtt.host}:{config.mqtt.port if config.mqtt.enabled else 'disabled'})"
        )
    return 0


# --- shared arguments ---------------------------------------------------------------------------------------------


def _add_zoo_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--zoo",
        type=Path,
        help="zoo directory or manifest (default: $EDGED_ZOO, ./model_zoo, the shipped zoo)",
    )


def _add_detection_args(p: argparse.ArgumentParser, score: float, nms: float) -> None:
    g = p.add_argument_group("detection")
    g.add_argument("--score-threshold", type=_unit_float, default=score, help=f"minimum score (default {score})")
    g.add_argument("--nms-iou", type=_unit_float, default=nms, help=f"NMS IoU threshold (default {nms})")
    g.add_argument("--max-detections", type=_positive_int, default=100, help="per frame (default 100)")
    g.add_argument("--threads", type=_positive_int, default=2, help="inference threads (default 2)")


def _engine_options(args: argparse.Namespace) -> EngineOptions:
    from edged.vision.engines import EngineOptions

    return EngineOptions(threads=getattr(args, "threads", 2))


def _postprocess(args: argparse.Namespace) -> PostprocessOptions:
    from edged.vision.postprocess import PostprocessOptions

    return PostprocessOptions(
        score_threshold=args.score_threshold, nms_iou=args.nms_iou, max_detections=args.max_detections
    )


def _eval_postprocess_defaults() -> PostprocessOptions:
    from edged.vision.postprocess import PostprocessOptions

    return PostprocessOptions.for_evaluation()


def _load_zoo(path: Path | None) -> Zoo:
    from edged.zoo.manifest import default_zoo_path, load_zoo

    return load_zoo(path or default_zoo_path())


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def _unit_float(text: str) -> float:
    value = float(text)
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"must be between 0 and 1, got {value}")
    return value


def _csv(text: str) -> list[str]:
    return [part.strip() for part in text.split(",") if part.strip()]
