"""The one interface every inference runtime implements, and the options they share."""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

Shape = tuple[int | None, ...]


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
    providers: list[str] = Field(
        default_factory=lambda: ["CPUExecutionProvider"],
        description="ONNX Runtime execution providers in order of preference; unavailable ones are skipped",
    )


class Engine(ABC):
    """A loaded model. Takes one preprocessed tensor, returns the raw output tensors as float32."""

    input_shape: Shape
    input_dtype: str  # "float32" or "uint8": what run() expects
    output_shapes: list[Shape]

    @abstractmethod
    def run(self, tensor: np.ndarray) -> list[np.ndarray]: ...

    def warm_up(self, runs: int) -> None:
        """First runs allocate arenas and pick kernels; keep them out of every measurement."""
        shape = tuple(d if d else 1 for d in self.input_shape)
        dummy = np.zeros(shape, dtype=np.uint8 if self.input_dtype == "uint8" else np.float32)
        for _ in range(runs):
            self.run(dummy)

    def close(self) -> None:  # noqa: B027 - engines without resources need nothing here
        """Release the runtime's memory now rather than at garbage collection."""
