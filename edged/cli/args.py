"""Arguments and helpers that several commands share."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # imported where used, so `edged --help` stays fast
    from edged.vision.engines import EngineOptions
    from edged.vision.postprocess import PostprocessOptions
    from edged.zoo.manifest import Zoo


def add_zoo_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--zoo",
        type=Path,
        help="zoo directory or manifest (default: $EDGED_ZOO, ./model_zoo, the shipped zoo)",
    )


def add_detection_args(p: argparse.ArgumentParser, score: float, nms: float) -> None:
    g = p.add_argument_group("detection")
    g.add_argument("--score-threshold", type=unit_float, default=score, help=f"minimum score (default {score})")
    g.add_argument("--nms-iou", type=unit_float, default=nms, help=f"NMS IoU threshold (default {nms})")
    g.add_argument("--max-detections", type=positive_int, default=100, help="per frame (default 100)")
    g.add_argument("--threads", type=positive_int, default=2, help="inference threads (default 2)")
    g.add_argument(
        "--engine",
        choices=["auto", "onnxruntime", "onnxruntime-xnnpack", "litert", "litert-no-xnnpack"],
        default="auto",
        help="engine to run on (default auto: the one `edged zoo profile` measured fastest on this device class, "
        "else the variant's first file)",
    )


def engine_options(args: argparse.Namespace) -> EngineOptions:
    from edged.vision.engines import EngineOptions

    return EngineOptions(threads=getattr(args, "threads", 2), runtime=getattr(args, "engine", "auto"))


def postprocess(args: argparse.Namespace) -> PostprocessOptions:
    from edged.vision.postprocess import PostprocessOptions

    return PostprocessOptions(
        score_threshold=args.score_threshold, nms_iou=args.nms_iou, max_detections=args.max_detections
    )


def eval_postprocess_defaults() -> PostprocessOptions:
    from edged.vision.postprocess import PostprocessOptions

    return PostprocessOptions.for_evaluation()


def load_zoo(path: Path | None) -> Zoo:
    from edged.zoo.manifest import default_zoo_path, load_zoo

    return load_zoo(path or default_zoo_path())


def positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def unit_float(text: str) -> float:
    value = float(text)
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"must be between 0 and 1, got {value}")
    return value


def csv(text: str) -> list[str]:
    return [part.strip() for part in text.split(",") if part.strip()]
