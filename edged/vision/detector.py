"""A detector: engine + pre-processing + decoder + NMS, checked against each other when it is opened."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from edged.vision.decoders import Decoder, DecoderMismatch, DecoderSpec
from edged.vision.engines import Engine, EngineOptions, ModelFormat, open_engine
from edged.vision.postprocess import PostprocessOptions, non_max_suppression
from edged.vision.preprocess import InputSpec, Preprocessor
from edged.vision.types import Detections


class InputMismatch(ValueError):
    """The manifest's input block does not describe the model's input tensor."""


class Detector:
    def __init__(
        self,
        engine: Engine,
        input_spec: InputSpec,
        decoder: Decoder,
        labels: list[str],
        postprocess: PostprocessOptions,
    ) -> None:
        self.engine = engine
        self.preprocess = Preprocessor(input_spec)
        self.decoder = decoder
        self.labels = labels
        self.postprocess = postprocess

    @classmethod
    def open(
        cls,
        model_path: Path,
        model_format: ModelFormat,
        input_spec: InputSpec,
        decoder_spec: DecoderSpec,
        labels: list[str],
        engine_options: EngineOptions | None = None,
        postprocess: PostprocessOptions | None = None,
    ) -> Detector:
        """Load and cross-check. Raises ModelError (file), InputMismatch (input block), DecoderMismatch."""
        options = engine_options or EngineOptions()
        engine = open_engine(model_path, model_format, options.model_copy(update={"warmup_runs": 0}))
        try:
            check_input(engine, input_spec)
            decoder = decoder_spec.build(input_spec.size, len(labels))
            decoder.check_outputs(engine.output_shapes)
        except (InputMismatch, DecoderMismatch):
            engine.close()
            raise
        engine.warm_up(options.warmup_runs)
        return cls(engine, input_spec, decoder, labels, postprocess or PostprocessOptions())

    def detect(self, image: np.ndarray) -> Detections:
        start = time.perf_counter()
        tensor, transform = self.preprocess(image)
        infer_start = time.perf_counter()
        outputs = self.engine.run(tensor)
        infer_ms = (time.perf_counter() - infer_start) * 1000
        candidates = self.decoder.decode(outputs, self.postprocess.score_threshold)
        kept = non_max_suppression(candidates, self.postprocess)
        boxes = transform.to_image(kept.boxes)
        return Detections(
            boxes=boxes,
            scores=kept.scores,
            class_ids=kept.class_ids,
            width=transform.width,
            height=transform.height,
            latency_ms=(time.perf_counter() - start) * 1000,
            inference_ms=infer_ms,
        )

    def close(self) -> None:
        self.engine.close()


def check_input(engine: Engine, spec: InputSpec) -> None:
    expected = spec.tensor_shape()
    actual = engine.input_shape
    if len(actual) != 4 or any(a is not None and a != e for a, e in zip(actual, expected)):
        w, h = spec.size
        hint = ""
        if len(actual) == 4:
            if actual[1] == 3 and spec.layout == "NHWC":
                hint = " (the model is NCHW: set layout: NCHW)"
            elif actual[3] == 3 and spec.layout == "NCHW":
                hint = " (the model is NHWC: set layout: NHWC)"
        raise InputMismatch(
            f"manifest says {w}x{h} {spec.layout} -> tensor {list(expected)}, "
            f"but the model's input is {[d if d is not None else '?' for d in actual]}{hint}"
        )
    if engine.input_dtype != spec.dtype:
        raise InputMismatch(f"manifest says dtype {spec.dtype}, but the model's input is {engine.input_dtype}")
