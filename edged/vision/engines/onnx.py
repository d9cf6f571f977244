"""ONNX Runtime engine."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import onnxruntime as ort

from edged.errors import ModelError
from edged.vision.engines.base import Engine, EngineOptions, Shape

log = logging.getLogger(__name__)

# ONNX Runtime otherwise writes a telemetry id under ~/.cache; a daemon on a camera has no business phoning home.
if hasattr(ort, "disable_telemetry_events"):
    ort.disable_telemetry_events()

_OPT_LEVELS = {
    "disable": ort.GraphOptimizationLevel.ORT_DISABLE_ALL,
    "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
    "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
    "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
}
_DTYPES = {"tensor(float)": "float32", "tensor(uint8)": "uint8"}
XNNPACK_PROVIDER = "XnnpackExecutionProvider"


def available_providers() -> list[str]:
    return list(ort.get_available_providers())


class OnnxEngine(Engine):
    def __init__(self, path: Path, options: EngineOptions) -> None:
        so = ort.SessionOptions()
        so.intra_op_num_threads = options.threads
        so.inter_op_num_threads = 1
        so.graph_optimization_level = _OPT_LEVELS[options.graph_optimization]
        so.add_session_config_entry("session.intra_op.allow_spinning", "1" if options.allow_spinning else "0")
        so.log_severity_level = 3
        try:
            self._session = ort.InferenceSession(str(path), so, providers=_providers(options.providers))
        except Exception as exc:  # onnxruntime raises its own pybind classes for every load failure
            raise ModelError(f"{path}: not a loadable ONNX model (corrupt or truncated?): {_first_line(exc)}") from None
        inputs = self._session.get_inputs()
        if len(inputs) != 1:
            names = ", ".join(i.name for i in inputs)
            raise ModelError(
                f"{path}: expected one image input, the model has {len(inputs)} ({names}); "
                "models exported with weights as inputs need them folded back into initializers"
            )
        if inputs[0].type not in _DTYPES:
            raise ModelError(f"{path}: input type {inputs[0].type} is not supported (float32 or uint8)")
        self._input_name = inputs[0].name
        self.input_shape = _shape(inputs[0].shape)
        self.input_dtype = _DTYPES[inputs[0].type]
        self.output_shapes = [_shape(o.shape) for o in self._session.get_outputs()]

    def run(self, tensor: np.ndarray) -> list[np.ndarray]:
        return [np.asarray(o, dtype=np.float32) for o in self._session.run(None, {self._input_name: tensor})]

    def close(self) -> None:
        del self._session


def _providers(wanted: list[str]) -> list[str]:
    available = set(ort.get_available_providers())
    chosen = [p for p in wanted if p in available]
    skipped = [p for p in wanted if p not in available]
    if skipped:
        log.warning("ONNX Runtime providers not available here, skipped: %s", ", ".join(skipped))
    return chosen or ["CPUExecutionProvider"]


def _shape(dims: list[int | str | None]) -> Shape:
    return tuple(d if isinstance(d, int) and d > 0 else None for d in dims)


def _first_line(exc: Exception) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
