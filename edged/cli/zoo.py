"""`edged zoo ...`: inspect and measure the variant family."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from pydantic import TypeAdapter

from edged.cli.args import (
    add_detection_args,
    add_zoo_arg,
    csv,
    engine_options,
    eval_postprocess_defaults,
    load_zoo,
    postprocess,
)


def register(commands: argparse._SubParsersAction) -> None:
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
    add_zoo_arg(p)
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
    add_zoo_arg(p)
    p.add_argument("--data", type=Path, required=True, help="YOLO dataset directory, or COCO annotations .json")
    p.add_argument("--images", type=Path, help="images directory for a COCO .json (default: next to it)")
    p.add_argument("--variant", action="append", help="variant id (repeatable; default: every variant)")
    p.add_argument("--classes", type=csv, help="comma-separated class names to score (default: all shared)")
    p.add_argument("--json", action="store_true", help="JSON: a list of reports")
    eval_defaults = eval_postprocess_defaults()
    add_detection_args(p, score=eval_defaults.score_threshold, nms=eval_defaults.nms_iou)
    p.set_defaults(handler=_run_zoo_eval)
    zoo.set_defaults(handler=lambda _args: zoo.print_help() or 2)


def _run_zoo_list(args: argparse.Namespace) -> int:
    from edged.zoo.report import check_variants, list_variants, render_table

    zoo = load_zoo(args.zoo)
    listing = list_variants(zoo)
    failures: dict[str, str] = check_variants(zoo, engine_options(args)) if args.check else {}
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

    zoo = load_zoo(args.zoo)
    variant_ids = args.variant or [v.id for v in zoo.variants]
    for variant_id in variant_ids:
        zoo.variant(variant_id)  # fail on a typo before minutes of work
    reports = []
    for variant_id in variant_ids:
        detector = zoo.open_detector(variant_id, engine_options(args), postprocess(args))
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
