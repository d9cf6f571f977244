"""Inference runtimes, chosen by the manifest's `format` field."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from edged.vision.engines.base import Engine, EngineOptions

ModelFormat = Literal["onnx", "tflite"]


def open_engine(path: Path, model_format: ModelFormat, options: EngineOptions) -> Engine:
    """Load `path` with the runtime for its format (imported only when used: a Pi may lack TFLite)."""
    engine: Engine
    if model_format == "onnx":
        from edged.vision.engines.onnx import OnnxEngine

        engine = OnnxEngine(path, options)
    elif model_format == "tflite":
        from edged.vision.engines.tflite import TfliteEngine

        engine = TfliteEngine(path, options)
    else:  # the manifest's Literal makes this unreachable from a validated file
        raise ValueError(f"unknown model format {model_format!r}")
    engine.warm_up(options.warmup_runs)
    return engine


__all__ = ["Engine", "EngineOptions", "ModelFormat", "open_engine"]
