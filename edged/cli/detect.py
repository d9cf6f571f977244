"""`edged detect`: one-shot detection on an image, a folder or a video."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from edged.cli.args import add_detection_args, add_zoo_arg, engine_options, load_zoo, positive_int, postprocess


def register(commands: argparse._SubParsersAction) -> None:
    p = commands.add_parser(
        "detect",
        help="one-shot detection on an image, a folder or a video",
        description="Run one variant over an image, every image in a folder, or every frame of a video. "
        "Prints one line per frame; with --json one JSON object per line (keys: frame, source, variant, "
        "latency_ms, width, height, objects[label, class_id, score, box=[x1,y1,x2,y2] normalised 0..1, "
        "track_id=null]).",
    )
    p.add_argument("source", type=Path, help="image file, folder of images, or video file")
    add_zoo_arg(p)
    p.add_argument("--variant", help="variant id (default: the zoo's `default`, else its first variant)")
    p.add_argument("--json", action="store_true", help="JSON lines on stdout")
    p.add_argument(
        "--annotate",
        type=Path,
        metavar="OUT",
        help="write the frames with boxes drawn (image, folder or .mp4/.avi)",
    )
    p.add_argument("--max-frames", type=positive_int, help="stop after this many frames")
    add_detection_args(p, score=0.35, nms=0.5)
    p.set_defaults(handler=_run_detect)


def _run_detect(args: argparse.Namespace) -> int:
    from edged.detect import detect_frames
    from edged.sources import FileFrames
    from edged.zoo.profile import device_class

    source = FileFrames(args.source)
    zoo = load_zoo(args.zoo)
    variant_id = args.variant or zoo.default_variant
    detector = zoo.open_detector(variant_id, engine_options(args), postprocess(args), device_class())
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
