"""Inference runtimes, chosen by the manifest's `format` field."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from edged.vision.engines.base import Engine, EngineOptions, Runtime, RuntimeChoice

ModelFormat = Literal["onnx", "tflite"]
RUNTIME_FORMAT: dict[Runtime, ModelFormat] = {
    "onnxruntime": "onnx",
    "onnxruntime-xnnpack": "onnx",
    "litert": "tflite",
    "litert-no-xnnpack": "tflite",
}
DEFAULT_RUNTIME: dict[ModelFormat, Runtime] = {"onnx": "onnxruntime", "tflite": "litert"}


def runtimes_for(model_format: ModelFormat) -> list[Runtime]:
    """Every engine that runs files of this format."""
    return [r for r, f in RUNTIME_FORMAT.items() if f == model_format]


def runtime_missing(runtime: Runtime) -> str | None:
    """Why `runtime` cannot run here, or None when it can."""
    if runtime == "onnxruntime":
        return None
    if runtime == "onnxruntime-xnnpack":
        from edged.vision.engines.onnx import XNNPACK_PROVIDER, available_providers

        return None if XNNPACK_PROVIDER in available_providers() else "this onnxruntime build has no XNNPACK provider"
    from edged.errors import MissingExtraError
    from edged.vision.engines.tflite import _interpreter_class

    try:
        _interpreter_class()
    except MissingExtraError as exc:
        return str(exc)
    return None


def open_engine(
    path: Path, model_format: ModelFormat, options: EngineOptions, runtime: Runtime | None = None
) -> Engine:
    """Load `path` with `runtime` (default: the usual one for its format). Runtimes are imported only when used:
    a Pi may lack TFLite."""
    runtime = runtime or DEFAULT_RUNTIME[model_format]
    if RUNTIME_FORMAT[runtime] != model_format:
        raise ValueError(f"{runtime} does not run {model_format} files")
    engine: Engine
    if runtime == "onnxruntime":
        from edged.vision.engines.onnx import OnnxEngine

        engine = OnnxEngine(path, options)
    elif runtime == "onnxruntime-xnnpack":
        from edged.vision.engines.onnx import XNNPACK_PROVIDER, OnnxEngine

        engine = OnnxEngine(path, options.model_copy(update={"providers": [XNNPACK_PROVIDER, "CPUExecutionProvider"]}))
    elif model_format == "tflite":
        from edged.vision.engines.tflite import TfliteEngine

        engine = TfliteEngine(path, options, xnnpack=runtime == "litert")
    else:  # the manifest's Literal makes this unreachable from a validated file
        raise ValueError(f"unknown model format {model_format!r}")
    engine.runtime = runtime
    engine.warm_up(options.warmup_runs)
    return engine


__all__ = [
    "DEFAULT_RUNTIME",
    "RUNTIME_FORMAT",
    "Engine",
    "EngineOptions",
    "ModelFormat",
    "Runtime",
    "RuntimeChoice",
    "open_engine",
    "runtime_missing",
    "runtimes_for",
]
