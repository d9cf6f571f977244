"""TFLite engine (ai-edge-litert, or tflite-runtime where only that is installed).

Quantized models take and give integers; this engine quantizes the input and dequantizes the outputs with the
tensors' own scale and zero point, so decoders and pre-processing see the same floats as for the fp32 twin.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from edged.errors import MissingExtraError, ModelError
from edged.vision.engines.base import Engine, EngineOptions


def _interpreter_class() -> Any:
    try:
        from ai_edge_litert.interpreter import Interpreter
    except ImportError:
        try:
            from tflite_runtime.interpreter import Interpreter
        except ImportError:
            raise MissingExtraError("ai-edge-litert", "tflite", "A .tflite model") from None
    return Interpreter


def _without_delegates() -> Any:
    """The op resolver of the built-in (reference) kernels, without the XNNPACK delegate LiteRT applies itself."""
    try:
        from ai_edge_litert.interpreter import OpResolverType
    except ImportError:
        from tflite_runtime.interpreter import OpResolverType
    return OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES


class TfliteEngine(Engine):
    def __init__(self, path: Path, options: EngineOptions, xnnpack: bool = True) -> None:
        interpreter_class = _interpreter_class()
        extra = {} if xnnpack else {"experimental_op_resolver_type": _without_delegates()}
        try:
            self._interp = interpreter_class(model_path=str(path), num_threads=options.threads, **extra)
            self._interp.allocate_tensors()
        except (ValueError, RuntimeError) as exc:
            raise ModelError(f"{path}: not a loadable TFLite model (corrupt or truncated?): {exc}") from None
        inputs = self._interp.get_input_details()
        if len(inputs) != 1:
            raise ModelError(f"{path}: expected one image input, the model has {len(inputs)}")
        self._input = inputs[0]
        self._outputs = self._interp.get_output_details()
        self.input_shape = tuple(int(d) for d in self._input["shape"])
        self.input_dtype = "uint8" if self._input["dtype"] == np.uint8 and not _quantized(self._input) else "float32"
        self.output_shapes = [tuple(int(d) for d in o["shape"]) for o in self._outputs]

    def run(self, tensor: np.ndarray) -> list[np.ndarray]:
        detail = self._input
        if _quantized(detail) and tensor.dtype == np.float32:
            scale, zero = detail["quantization"]
            info = np.iinfo(detail["dtype"])
            tensor = np.clip(np.round(tensor / scale + zero), info.min, info.max).astype(detail["dtype"])
        self._interp.set_tensor(detail["index"], tensor)
        self._interp.invoke()
        return [self._read(o) for o in self._outputs]

    def _read(self, detail: dict[str, Any]) -> np.ndarray:
        value = self._interp.get_tensor(detail["index"])
        if _quantized(detail):
            scale, zero = detail["quantization"]
            return (value.astype(np.float32) - zero) * scale
        return value.astype(np.float32, copy=False)

    def close(self) -> None:
        del self._interp


def _quantized(detail: dict[str, Any]) -> bool:
    return detail["dtype"] in (np.int8, np.uint8, np.int16) and detail["quantization"][0] != 0
