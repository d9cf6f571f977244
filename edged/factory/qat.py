"""Quantization-aware fine-tuning of an ONNX Runtime QDQ model, distilled from its own float parent.

Why: most of what int8 costs a small detector is its 8-bit activations, and the error is spread over all of them.
On FastestDet, exploratory runs (not a command of this repo) found the activations, not the weights, behind nearly
all of the int8 model's output error, shared among its 112 activation quantizers with none dominant: rounding
(rounding.py) cannot reach it and mixed precision would have to keep most of the net float. Fine-tuning with the
quantized forward pass in the loop lets each layer compensate for the error of the ones before it (Jacob et al.
2018), and learning each activation's range with it (LSQ: Esser et al., "Learned Step Size Quantization", 2020)
trades clipping against resolution where it matters for the output.
No labels: the float parent's outputs are the targets (distillation, as in Mishra & Marr, "Apprentice", 2018), so
this works on any detector the manifest describes.

The grid's shape stays the quantizer's: the same tensors are quantized with the same types, per-channel weight
scales and zero points are kept; the activation scales, the biases and the weights move. So the file keeps its
graph, size and speed. The QDQ model runs as a torch module (onnx_torch.py); the trained values are written back
into it, rounded onto their grids.

What moves most is the ranges. Weights train in units of their grid step from their rounded values, so one must
travel half a step to change; at the default rate few do. In exploratory runs on FastestDet, letting them move
further (5x the rate) fitted the 128 training images and lost agreement with the float model on held-out images,
and freezing them lost a little; bench/INT8_RECIPES.md measures the default. The result depends on the image
order (the build's --seed); more images help: 512 frames of one video beat 128 COCO images, on other scenes too
(bench/INT8_RECIPES.md).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from tqdm import tqdm

from edged.errors import MissingExtraError

EPOCHS = 4  # 8 fitted FastestDet's 128 calibration images and lost held-out agreement in an exploratory run
BATCH = 8
WEIGHT_LEARNING_RATE = 0.01  # Adam, for weights in units of their grid step: a hundred steps move one a notch
RANGE_LEARNING_RATE = 1e-3  # Adam, for the activation scales, whose gradients LSQ already normalises
BIAS_LEARNING_RATE = 1e-4  # Adam, for the biases, which train as plain floats
MIN_RANGE_FRACTION = 1 / 16  # no activation scale shrinks below this fraction of the calibrated one


@dataclass
class FinetuneReport:
    steps: int
    images: int  # training images, each also seen mirrored
    ranges: int  # activation ranges learnt
    loss_before: float  # mean squared distance of the outputs to the float parent's, on the training images
    loss_after: float
    changed: int  # integer weights that moved


def finetune(
    float_session: Any,
    quantized: Any,
    tensors: list[np.ndarray],
    input_name: str,
    weight_range: tuple[int, int],
    epochs: int = EPOCHS,
    seed: int = 0,
    progress: bool = True,
) -> FinetuneReport:
    """Fine-tune `quantized` (a QDQ ModelProto, changed in place) towards `float_session`'s outputs on `tensors`
    and their mirror images. `float_session`: an ONNX Runtime session of the float parent."""
    torch = _torch()
    from edged.factory.onnx_torch import torch_module

    torch.manual_seed(seed)
    student = torch_module(quantized, weight_range, learn_ranges=True)
    before = student.integers()
    images, targets = _teacher_targets(float_session, tensors, input_name)
    optimizer = torch.optim.Adam(
        [
            {"params": [g.latent for g in student.grids if g.is_weight], "lr": WEIGHT_LEARNING_RATE},
            {"params": [g.latent for g in student.grids if not g.is_weight], "lr": BIAS_LEARNING_RATE},
            {"params": list(student.ranges), "lr": RANGE_LEARNING_RATE},
        ]
    )
    batches = -(-len(images) // BATCH)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, epochs * batches)
    generator = torch.Generator().manual_seed(seed)
    floors = [r.detach().clone() * MIN_RANGE_FRACTION for r in student.ranges]
    loss_before = _distance(student, images, targets)
    with tqdm(total=epochs * len(images), desc="fine-tuning", unit="img", disable=not progress, leave=False) as bar:
        for _ in range(epochs):
            order = torch.randperm(len(images), generator=generator)
            for start in range(0, len(images), BATCH):
                batch = order[start : start + BATCH]
                loss = _loss(student(images[batch]), [t[batch] for t in targets])
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
                schedule.step()
                with torch.no_grad():  # Adam's steps are absolute: keep a small scale from crossing zero
                    for scale, floor in zip(student.ranges, floors, strict=True):
                        scale.clamp_(min=floor)
                bar.update(len(batch))
                bar.set_postfix(loss=f"{loss.item():.2e}")
    loss_after = _distance(student, images, targets)
    _write_ranges(quantized, student)
    after = student.integers()
    _write_integers(quantized, after)
    changed = sum(int(np.count_nonzero(after[g.name] != before[g.name])) for g in student.grids if g.is_weight)
    return FinetuneReport(epochs * batches, len(tensors), len(student.ranges), loss_before, loss_after, changed)


def _torch() -> Any:
    try:
        import torch
    except ImportError:
        raise MissingExtraError("torch", "build", "int8 fine-tuning (--finetune)") from None
    return torch


def available() -> bool:
    """Whether fine-tuning can run here (torch is in the [build] extra)."""
    try:
        _torch()
    except MissingExtraError:
        return False
    return True


def _teacher_targets(float_session: Any, tensors: list[np.ndarray], input_name: str) -> tuple[Any, list[Any]]:
    """The training images (each also mirrored) as one batch tensor, and the float parent's outputs for them."""
    import torch

    images = np.concatenate([t for tensor in tensors for t in (tensor, tensor[..., ::-1])])
    outputs = [float_session.run(None, {input_name: np.ascontiguousarray(image[None])}) for image in images]
    targets = [torch.from_numpy(np.concatenate([o[k] for o in outputs])) for k in range(len(outputs[0]))]
    return torch.from_numpy(np.ascontiguousarray(images)), targets


def _loss(outputs: list[Any], targets: list[Any]) -> Any:
    return sum(((o - t) ** 2).mean() for o, t in zip(outputs, targets, strict=True))


def _distance(student: Any, images: Any, targets: list[Any]) -> float:
    import torch

    with torch.no_grad():
        total = 0.0
        for start in range(0, len(images), BATCH):
            total += float(_loss(student(images[start : start + BATCH]), [t[start : start + BATCH] for t in targets]))
        return total / -(-len(images) // BATCH)


def _write_ranges(model: Any, student: Any) -> None:
    """The learnt activation scales, and with them each int32 bias's scale (input scale x weight scale)."""
    from onnx import numpy_helper

    learnt = {n: float(p.detach().reshape(-1)[0]) for n, p in zip(student.range_names, student.ranges, strict=True)}
    inits = {i.name: i for i in model.graph.initializer}
    for name, value in learnt.items():
        _set(inits[name], np.full(numpy_helper.to_array(inits[name]).shape, value))
    producer = {o: n for n in model.graph.node for o in n.output}
    grids = {g.name: g for g in student.grids}
    for node in model.graph.node:
        if node.op_type != "Conv" or len(node.input) < 3:
            continue
        act, weight, bias = (producer.get(i) for i in node.input[:3])
        if act is None or weight is None or bias is None or act.op_type != "DequantizeLinear":
            continue
        if act.input[1] not in learnt or bias.input[0] not in grids:
            continue
        scale = learnt[act.input[1]] * numpy_helper.to_array(inits[weight.input[1]]).astype(np.float64)
        _set(inits[bias.input[1]], scale)
        grids[bias.input[0]].rescale(scale)


def _write_integers(model: Any, integers: dict[str, np.ndarray]) -> None:
    for init in model.graph.initializer:
        if init.name in integers:
            _set(init, integers[init.name])


def _set(init: Any, value: np.ndarray) -> None:
    """Replace an initializer's values, keeping its name, dtype and shape."""
    from onnx import numpy_helper

    old = numpy_helper.to_array(init)
    init.CopyFrom(numpy_helper.from_array(np.asarray(value).reshape(old.shape).astype(old.dtype), init.name))
