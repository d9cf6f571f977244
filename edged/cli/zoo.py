"""`edged zoo ...`: inspect, measure, build and report the variant family."""

from __future__ import annotations

import argparse
import re
import shlex
import sys
from itertools import pairwise
from pathlib import Path
from typing import TYPE_CHECKING

from pydantic import TypeAdapter

from edged.cli.args import (
    add_detection_args,
    add_zoo_arg,
    csv,
    engine_options,
    eval_postprocess_defaults,
    load_zoo,
    positive_int,
    postprocess,
)

if TYPE_CHECKING:
    from edged.factory.factory import BuildReport
    from edged.factory.int8 import Refinement
    from edged.zoo.profile import EnergyMeter, ProfileReport

INT8_HELP = """\
int8: ONNX Runtime static quantization (QDQ, per-channel weights, U8 activations), calibrated on a folder of
unlabelled images pre-processed as the variant's manifest `input` says, then held to the accuracy guard on --eval.
Dynamic quantization is not offered: it leaves convolutions in float and re-computes activation ranges every
frame, which made these conv nets 2-10x slower and wrecked YOLOX (mAP 0.0007).

On x86 CPUs without VNNI, ONNX Runtime's full-range U8/S8 kernels saturate (NanoDet lost 0.04 mAP50-95 to it);
--weights auto then tries U8/U8 and 7-bit S8 weights instead. The guard measures on this machine: build on (or
re-check with `edged zoo eval --record` on) the device class the variant will run on.

A ReLU (or Clip) right after a convolution is folded into the range of the convolution's quantized output
(--ops conv-relu, ONNX Runtime's own QDQRemovableActivation): each output is rounded once, over what the ReLU
keeps. --ops conv rounds the whole output and then the ReLU's again; on FastestDet that cost accuracy and speed.

Where every candidate fails the guard, --rounding auto refines the most accurate one: layer by layer on the
calibration images, each convolution's bias absorbs the mean error of its output (bias correction); then, if
that is not enough and torch is installed (the [build] extra), --finetune auto trains weights and activation
ranges with the quantized model in the loop, towards the parent's own outputs on unlabelled images (--finetune-data,
default the calibration folder; QAT, no labels; 2-3 minutes on 2 cores for FastestDet). Same graph, size and
speed. Candidates with --float-outliers keep float the convolutions whose input one 8-bit scale serves badly:
that is what YOLOX-nano needed. bench/INT8_RECIPES.md measures each refinement on FastestDet.

The new model file and its manifest entry are written into the output zoo (--out; created if new, or the source
zoo itself), which also lists the parent with its file referenced, not copied."""


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
    p.add_argument(
        "--iou",
        type=iou_thresholds,
        default=(),
        metavar="T[,T...]",
        help="also report AP at these IoU thresholds (e.g. 0.1,0.3): whether objects mAP50 misses are found with "
        "boxes a little off (tiny objects, loose labels) or not found at all",
    )
    p.add_argument(
        "--sizes",
        type=size_edges,
        default=(),
        metavar="E[,E...]",
        help="also report AP50 and recall at IoU 0.5 by object size, cut at these edges in pixels of the square "
        "root of a box's area in the image (e.g. 2,4,8: which sizes are missed; COCO's small is below 32)",
    )
    eval_defaults = eval_postprocess_defaults()
    add_detection_args(p, score=eval_defaults.score_threshold, nms=eval_defaults.nms_iou)
    p.add_argument(
        "--record",
        action="store_true",
        help="write the accuracy into each variant's profile for this device class (rewrites the manifest)",
    )
    add_device_class_arg(p)
    p.set_defaults(handler=_run_zoo_eval)

    register_build(sub)
    register_profile(sub)
    register_report(sub)
    zoo.set_defaults(handler=lambda _args: zoo.print_help() or 2)


def add_device_class_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--device-class",
        help="profile key for this kind of device (default: the CPU model and core count, e.g. amd-epyc-2core)",
    )


def register_build(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "build",
        help="build a compressed variant (int8) held to an accuracy guard",
        description="Build a compressed variant of a zoo's detector.\n\n" + INT8_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_zoo_arg(p)
    p.add_argument("--variant", required=True, help="the parent variant id")
    p.add_argument("--technique", required=True, choices=["int8"], help="compression technique")
    p.add_argument("--calib", type=Path, required=True, help="folder of calibration images (never the eval set)")
    p.add_argument("--eval", type=Path, required=True, help="labelled eval set for the guard (YOLO dir or COCO .json)")
    p.add_argument("--eval-images", type=Path, help="images directory for a COCO .json (default: next to it)")
    p.add_argument("--out", type=Path, required=True, help="output zoo directory (created if new)")
    p.add_argument("--id", dest="new_id", type=variant_id, help="new variant id (default: <parent>-int8)")
    p.add_argument("--calib-images", type=positive_int, default=64, help="calibration images used (default 64)")
    p.add_argument(
        "--seed",
        type=int,
        default=0,
        help="seed of the calibration and fine-tuning samples and of fine-tuning's image order (default 0)",
    )
    p.add_argument(
        "--calibration",
        choices=["auto", "minmax", "entropy", "percentile"],
        default="auto",
        help="activation ranges: auto tries minmax then percentile (99.999th); entropy is slower and gave "
        "MinMax's ranges on these detectors (default auto)",
    )
    p.add_argument(
        "--ops",
        choices=["conv-relu", "conv", "all"],
        default="conv-relu",
        help="operators to quantize: conv-relu folds a ReLU/Clip after a conv into its output range (one rounding, "
        "not two); conv quantizes convolutions alone; all every op ONNX Runtime can (default conv-relu)",
    )
    p.add_argument(
        "--weights",
        choices=["auto", "s8", "s8-7bit", "u8"],
        default="auto",
        help="weight type: s8 is the fast path; auto picks s8 where it is exact and u8, s8-7bit where it saturates",
    )
    p.add_argument(
        "--float-first-conv",
        choices=["auto", "yes", "no"],
        default="auto",
        help="keep the convolution on the raw pixels in float (auto tries both; default auto)",
    )
    p.add_argument(
        "--float-outliers",
        choices=["auto", "yes", "no"],
        default="auto",
        help="keep float the convolutions whose input one 8-bit scale serves badly (per-channel SNR 10 dB below "
        "the model's median). It saved YOLOX-nano (3 convs float: 0.2337 -> 0.3343 mAP50-95 at the same size); on "
        "NanoDet it doubles the file. auto tries both (default auto)",
    )
    p.add_argument(
        "--rounding",
        choices=["auto", "nearest", "bias-correction", "adaround"],
        default="auto",
        help="nearest; bias-correction (each conv's bias absorbs its mean output error, layer by layer); adaround "
        "(weights also rounded up or down to reproduce each layer: minutes, and no better than bias-correction on "
        "FastestDet, see bench/INT8_RECIPES.md). auto: nearest, then, when no candidate passes the guard, the most "
        "accurate one with bias-correction (default auto)",
    )
    p.add_argument(
        "--finetune",
        choices=["auto", "yes", "no"],
        default="auto",
        help="quantization-aware fine-tuning, distilled from the parent: weights and activation ranges (LSQ) "
        "trained with the quantizer in the loop on unlabelled images. Needs torch. auto: the "
        "last refinement, when no candidate passes the guard and torch is installed (default auto)",
    )
    p.add_argument(
        "--finetune-data",
        type=Path,
        help="folder of unlabelled images fine-tuning trains on, never the eval set (default: the --calib folder). "
        "More helps: 512 frames of one highway video brought FastestDet closer to its float model than 128 COCO "
        "images did, on other scenes too (bench/INT8_RECIPES.md)",
    )
    p.add_argument(
        "--finetune-images",
        type=positive_int,
        default=128,
        help="how many of them fine-tuning trains on, each also mirrored (default 128)",
    )
    p.add_argument(
        "--max-drop", type=non_negative_float, default=0.02, help="largest mAP50-95 loss accepted (default 0.02)"
    )
    p.add_argument("--force", action="store_true", help="write the best candidate even when it fails the guard")
    p.add_argument("--threads", type=positive_int, default=2, help="inference threads for the guard (default 2)")
    add_device_class_arg(p)
    p.add_argument("--json", action="store_true", help="one JSON document (the build report)")
    p.set_defaults(handler=_run_zoo_build)


def register_profile(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "profile",
        help="latency, size, params, MACs and energy of variants on this device",
        description="Measure each variant on this device: model-only latency p50/p95 over --runs after "
        "--warmup (rounds alternate between variants, so they are compared in the same run), file size, "
        "parameters and MACs (from the ONNX graph), and energy per inference: MEASURED when a power source "
        "that measures is found (RAPL, INA219/3221, a battery gauge; idle power subtracted), otherwise "
        "ESTIMATED as latency x --assumed-power-w and labelled so. Figures are written into the manifest "
        "under the device class.",
    )
    add_zoo_arg(p)
    p.add_argument("--variant", action="append", help="variant id (repeatable; default: every variant)")
    p.add_argument("--runs", type=positive_int, default=200, help="timed inferences per variant (default 200)")
    p.add_argument("--warmup", type=warmup_runs, default=20, help="untimed inferences first (0-100, default 20)")
    p.add_argument("--threads", type=positive_int, default=2, help="inference threads (default 2)")
    p.add_argument(
        "--assumed-power-w",
        type=float,
        help="active power assumed for the energy estimate (default 5 W: a guess, labelled as one); "
        "implies the estimate even where a power meter exists",
    )
    add_device_class_arg(p)
    p.add_argument("--no-save", action="store_true", help="print only; leave the manifest as it is")
    p.add_argument("--json", action="store_true", help="one JSON document")
    p.set_defaults(handler=_run_zoo_profile)


def register_report(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "report",
        help="Pareto plot (PNG) and Markdown table of the family",
        description="Draw accuracy against energy per inference and against latency for one device class, "
        "with the Pareto frontier, and write the same figures as a Markdown table.",
    )
    add_zoo_arg(p)
    add_device_class_arg(p)
    p.add_argument("--out", type=Path, default=Path("zoo-report"), help="output directory (default ./zoo-report)")
    p.add_argument("--json", action="store_true", help="one JSON document instead of the table")
    p.set_defaults(handler=_run_zoo_report)


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
                extra_iou=args.iou,
                size_edges=args.sizes,
            )
        )
        detector.close()
    if args.json:
        print(TypeAdapter(list[EvalReport]).dump_json(reports, indent=2).decode())
    else:
        print(render_eval_table(reports, args.classes))
    if args.record:
        from edged.zoo.profile import record_accuracy

        key = _device_class(args)
        record_accuracy(zoo, reports, key)
        print(f"recorded accuracy of {len(reports)} variant(s) under '{key}' in {zoo.path}", file=sys.stderr)
    return 0


def iou_thresholds(text: str) -> tuple[float, ...]:
    values = _numbers(text, "0.1,0.3")
    if not values or not all(0.0 < v < 1.0 for v in values):
        raise argparse.ArgumentTypeError(f"{text!r}: IoU thresholds lie strictly between 0 and 1")
    return values


def size_edges(text: str) -> tuple[float, ...]:
    values = _numbers(text, "2,4,8")
    if not values or values[0] <= 0 or any(b <= a for a, b in pairwise(values)):
        raise argparse.ArgumentTypeError(f"{text!r}: sizes in pixels, positive and increasing, e.g. 2,4,8")
    return values


def _numbers(text: str, example: str) -> tuple[float, ...]:
    try:
        return tuple(float(part) for part in text.split(",") if part.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: comma-separated numbers, e.g. {example}") from None


def warmup_runs(text: str) -> int:
    value = int(text)
    if not 0 <= value <= 100:
        raise argparse.ArgumentTypeError(f"must be between 0 and 100, got {value}")
    return value


def non_negative_float(text: str) -> float:
    value = float(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {value}")
    return value


def variant_id(text: str) -> str:
    if not re.fullmatch(r"[a-z0-9][a-z0-9._-]*", text):
        raise argparse.ArgumentTypeError(f"{text!r}: lower-case letters, digits, '.', '_' and '-' only")
    return text


def _device_class(args: argparse.Namespace) -> str:
    from edged.zoo.profile import device_class

    return args.device_class or device_class()


def _run_zoo_build(args: argparse.Namespace) -> int:
    from edged.errors import MissingExtraError
    from edged.zoo.manifest import default_zoo_path

    try:
        from edged.factory.factory import Int8BuildRequest, build_int8_variant
        from edged.factory.int8 import candidate_recipes
    except ImportError as exc:  # onnx (and ONNX Runtime's quantization tools that need it)
        raise MissingExtraError(exc.name or "onnx", "build", "edged zoo build") from None

    if args.finetune == "yes":
        from edged.factory import qat

        if not qat.available():  # now, not after minutes of calibration
            raise MissingExtraError("torch", "build", "edged zoo build --finetune yes")
    recipes = candidate_recipes(
        ["minmax", "percentile"] if args.calibration == "auto" else [args.calibration],
        [args.ops],
        None if args.weights == "auto" else [args.weights],
        None if args.float_first_conv == "auto" else [args.float_first_conv == "yes"],
        None if args.float_outliers == "auto" else [args.float_outliers == "yes"],
        "nearest" if args.rounding == "auto" else args.rounding,
        finetune=args.finetune == "yes",
    )
    request = Int8BuildRequest(
        zoo=args.zoo or default_zoo_path(),
        variant=args.variant,
        calibration_images=args.calib,
        eval_data=args.eval,
        eval_images=args.eval_images,
        out=args.out,
        new_id=args.new_id,
        calibration_limit=args.calib_images,
        seed=args.seed,
        recipes=recipes,
        finetune_images=args.finetune_data,
        finetune_limit=args.finetune_images,
        refinements=_refinements(args),
        max_drop=args.max_drop,
        force=args.force,
        threads=args.threads,
        device_class=_device_class(args),
        command=_build_command(args),
    )
    report = build_int8_variant(request, progress=not args.json)
    if args.json:
        print(report.model_dump_json(indent=2))
    else:
        print(_render_build(report))
    return 0 if report.accepted or report.forced else 1


def _refinements(args: argparse.Namespace) -> list[Refinement]:
    """What the guard adds to its most accurate recipe, in order, while no candidate passes."""
    found: list[Refinement] = ["bias-correction"] if args.rounding == "auto" else []
    return found + (["finetune"] if args.finetune == "auto" else [])


def _build_command(args: argparse.Namespace) -> str:
    """The build as a complete command line, every option spelled out: provenance that rebuilds the variant."""
    from edged.zoo.manifest import default_zoo_path

    parts = ["edged", "zoo", "build", "--zoo", str(args.zoo or default_zoo_path()), "--variant", args.variant]
    parts += ["--technique", args.technique, "--calib", str(args.calib), "--eval", str(args.eval)]
    parts += ["--eval-images", str(args.eval_images)] if args.eval_images else []
    parts += ["--out", str(args.out)] + (["--id", args.new_id] if args.new_id else [])
    parts += ["--calib-images", str(args.calib_images), "--seed", str(args.seed)]
    parts += ["--calibration", args.calibration, "--ops", args.ops, "--weights", args.weights]
    parts += ["--float-first-conv", args.float_first_conv, "--float-outliers", args.float_outliers]
    parts += ["--rounding", args.rounding, "--finetune", args.finetune]
    parts += ["--finetune-data", str(args.finetune_data)] if args.finetune_data else []
    parts += ["--finetune-images", str(args.finetune_images)]
    parts += ["--max-drop", str(args.max_drop)]
    return shlex.join(parts + (["--force"] if args.force else []))


def _render_build(report: BuildReport) -> str:
    from edged.zoo.report import render_build

    return render_build(report)


def _energy_meter(assumed_power_w: float | None) -> EnergyMeter:
    """A measured source when the device has one (and no assumption was asked for); else the labelled estimate."""
    from edged.power.window_meter import WindowEnergyMeter, measured_source
    from edged.zoo.profile import AssumedPowerMeter

    if assumed_power_w is not None:
        return AssumedPowerMeter(assumed_power_w)
    source = measured_source()
    if source is None:
        print("no power meter found (edged power probe says why): energy is estimated", file=sys.stderr)
        return AssumedPowerMeter()
    print(f"energy measured with {source.id}", file=sys.stderr)
    return WindowEnergyMeter(source)


def _run_zoo_profile(args: argparse.Namespace) -> int:
    from edged.zoo.profile import ProfileSettings, profile_zoo, record_profiles
    from edged.zoo.report import render_profile

    zoo = load_zoo(args.zoo)
    variant_ids = args.variant or [v.id for v in zoo.variants]
    for variant_id in variant_ids:
        zoo.variant(variant_id)
    settings = ProfileSettings(
        runs=args.runs, warmup=args.warmup, threads=args.threads, device_class=_device_class(args)
    )
    meter = _energy_meter(args.assumed_power_w)
    report: ProfileReport = profile_zoo(zoo, variant_ids, settings, meter, progress=not args.json)
    if not args.no_save:
        record_profiles(zoo, report)
        report.saved = True
    print(report.model_dump_json(indent=2) if args.json else render_profile(report))
    return 0


def _run_zoo_report(args: argparse.Namespace) -> int:
    from edged.zoo.report import write_pareto_report

    zoo = load_zoo(args.zoo)
    report = write_pareto_report(zoo, args.out, args.device_class)
    if args.json:
        print(report.model_dump_json(indent=2))
    else:
        print(report.markdown)
        print(f"\nwrote {report.png} and {report.markdown_file}", file=sys.stderr)
    return 0
