"""The one interface every inference runtime implements, and the options they share."""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

Shape = tuple[int | None, ...]
# An engine a model file runs on: ONNX Runtime for .onnx (its CPU kernels, or its XNNPACK execution provider where
# the onnxruntime build has one: the PyPI x86 wheels do not, Android / ARM builds can); LiteRT for .tflite, with its
# default XNNPACK delegate or without it (the reference kernels).
Runtime = Literal["onnxruntime", "onnxruntime-xnnpack", "litert", "litert-no-xnnpack"]
RuntimeChoice = Literal["auto", "onnxruntime", "onnxruntime-xnnpack", "litert", "litert-no-xnnpack"]


class EngineOptions(BaseModel):
    """Runtime knobs. Profiles are measured at a thread count, so the governor's predictions hold only here."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    threads: int = Field(2, ge=1, le=256, description="intra-op threads (ONNX) / XNNPACK threads (TFLite)")
    graph_optimization: Literal["disable", "basic", "extended", "all"] = "all"
    allow_spinning: bool = Field(
        False,
        description="ONNX Runtime busy-waits between ops; off by default: it doubles latency on a shared CPU",
    )
    warmup_runs: int = Field(2, ge=0, le=100)
    runtime: RuntimeChoice = Field(
        "auto",
        description="engine to run every variant on; auto: the one `edged zoo profile` measured fastest on this "
        "device class (else the variant's first file)",
    )
    providers: list[str] = Field(
        default_factory=lambda: ["CPUExecutionProvider"],
        description="ONNX Runtime execution providers in order of preference; unavailable ones are skipped",
    )


class Engine(ABC):
    """A loaded model. Takes one preprocessed tensor, returns the raw output tensors as float32."""

    runtime: Runtime  # which engine this is (set by open_engine)
    input_shape: Shape
    input_dtype: str  # "float32" or "uint8": what run() expects
    output_shapes: list[Shape]

    @abstractmethod
    def run(self, tensor: np.ndarray) -> list[np.ndarray]: ...

    def warm_up(self, runs: int, shape: tuple[int, ...] | None = None) -> None:
        """First runs allocate arenas and pick kernels; keep them out of every measurement. `shape` fills the
        dimensions a model leaves free (a detector warms up at the size it will run at)."""
        shape = shape or tuple(d if d else 1 for d in self.input_shape)
        dummy = np.zeros(shape, dtype=np.uint8 if self.input_dtype == "uint8" else np.float32)
        for _ in range(runs):
            self.run(dummy)

    def close(self) -> None:  # noqa: B027 - engines without resources need nothing here
        """Release the runtime's memory now rather than at garbage collection."""
