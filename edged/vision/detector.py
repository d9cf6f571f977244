"""A detector: engine + pre-processing + decoder + NMS, checked against each other when it is opened."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from edged.vision.decoders import Candidates, Decoder, DecoderMismatch, DecoderSpec
from edged.vision.engines import Engine, EngineOptions, ModelFormat, Runtime, open_engine
from edged.vision.postprocess import PostprocessOptions, non_max_suppression
from edged.vision.preprocess import InputSpec, Preprocessor
from edged.vision.tiling import tile_windows, truncated
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
        self._whole_frame = Preprocessor(input_spec)  # tiled: the full-frame pass keeps its own placement
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
        runtime: Runtime | None = None,
    ) -> Detector:
        """Load and cross-check. Raises ModelError (file), InputMismatch (input block), DecoderMismatch."""
        options = engine_options or EngineOptions()
        engine = open_engine(model_path, model_format, options.model_copy(update={"warmup_runs": 0}), runtime)
        try:
            check_input(engine, input_spec)
            decoder = decoder_spec.build(input_spec.size, len(labels))
            decoder.check_outputs(engine.output_shapes)
        except (InputMismatch, DecoderMismatch):
            engine.close()
            raise
        engine.warm_up(options.warmup_runs, input_spec.tensor_shape())
        return cls(engine, input_spec, decoder, labels, postprocess or PostprocessOptions())

    def detect(self, image: np.ndarray) -> Detections:
        start = time.perf_counter()
        tiles = self.preprocess.spec.tiles
        if tiles is None:
            kept, infer_ms = self._detect_window(self.preprocess, image, (0, 0))
        else:
            kept, infer_ms = self._detect_tiled(image)
        height, width = image.shape[:2]
        return Detections(
            boxes=kept.boxes,
            scores=kept.scores,
            class_ids=kept.class_ids,
            width=width,
            height=height,
            latency_ms=(time.perf_counter() - start) * 1000,
            inference_ms=infer_ms,
        )

    def _detect_window(
        self, preprocess: Preprocessor, pixels: np.ndarray, origin: tuple[int, int]
    ) -> tuple[Candidates, float]:
        """One inference over `pixels` (the frame, or a tile of it at `origin`): boxes in frame pixels."""
        tensor, transform = preprocess(pixels)
        infer_start = time.perf_counter()
        outputs = self.engine.run(tensor)
        infer_ms = (time.perf_counter() - infer_start) * 1000
        candidates = self.decoder.decode(outputs, self.postprocess.score_threshold)
        kept = non_max_suppression(candidates, self.postprocess)
        boxes = transform.to_image(kept.boxes)
        if origin != (0, 0):
            boxes += np.array([*origin, *origin], np.float32)
        return Candidates(boxes, kept.scores, kept.class_ids), infer_ms

    def _detect_tiled(self, image: np.ndarray) -> tuple[Candidates, float]:
        spec = self.preprocess.spec.tiles
        assert spec is not None
        height, width = image.shape[:2]
        parts, infer_ms = [], 0.0
        for window in tile_windows(width, height, spec):
            x0, y0, x1, y1 = window
            found, ms = self._detect_window(self.preprocess, image[y0:y1, x0:x1], (x0, y0))
            if spec.full_frame:
                whole = ~truncated(found.boxes, window, width, height)
                found = Candidates(found.boxes[whole], found.scores[whole], found.class_ids[whole])
            parts.append(found)
            infer_ms += ms
        if spec.full_frame:
            found, ms = self._detect_window(self._whole_frame, image, (0, 0))
            parts.append(found)
            infer_ms += ms
        merged = Candidates(
            np.concatenate([p.boxes for p in parts]).astype(np.float32, copy=False),
            np.concatenate([p.scores for p in parts]),
            np.concatenate([p.class_ids for p in parts]),
        )
        return non_max_suppression(merged, self.postprocess), infer_ms

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
