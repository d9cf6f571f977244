"""1-bit weights: sign(w) x a per-output-channel scale, trained with a straight-through estimator, and stored
packed (8 weights a byte) inside the ONNX file, unpacked by the graph itself when the model is loaded.

The first layer (raw pixels) and the last (box and class predictors) stay in float: they are a sliver of the
weights and most of the damage binarising them would do. Activations stay float, so on a CPU the binary variant
runs float convolutions on unpacked weights: it is as fast as its fp32 sibling, not faster. What it buys is a
file (and a download, and weights in flash) more than ten times smaller.
"""

from __future__ import annotations

import copy
import itertools
from collections.abc import Iterable
from pathlib import Path
from typing import Any, TypeVar, cast

import numpy as np
import onnx
import torch
from onnx import TensorProto, helper, numpy_helper
from torch import Tensor, nn
from torch.nn.utils.fusion import fuse_conv_bn_eval

from edged.factory.train.statistics import channel_statistics
from edged.factory.train.student import export_onnx

Model = TypeVar("Model", bound=nn.Module)

BITS_PER_BYTE = 8


class _SignSTE(torch.autograd.Function):
    """sign with sign(0) = +1; the gradient passes straight through where |w| <= 1 (clipped identity)."""

    @staticmethod
    def forward(ctx: Any, weight: Tensor) -> Tensor:
        ctx.save_for_backward(weight)
        return torch.where(weight >= 0, torch.ones_like(weight), -torch.ones_like(weight))

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> Tensor:
        (weight,) = ctx.saved_tensors
        return grad * (weight.abs() <= 1).to(grad.dtype)


def binarize_weight(weight: Tensor) -> Tensor:
    """sign(w) x mean|w| per output channel (XNOR-Net's optimal scale for a sign code)."""
    scale = weight.abs().mean(dim=(1, 2, 3), keepdim=True)
    sign: Tensor = _SignSTE.apply(weight)
    return sign * scale


class BinaryConv2d(nn.Conv2d):
    """A convolution whose forward uses binarised weights; the float weights are the latent ones being trained."""

    def forward(self, x: Tensor) -> Tensor:
        return self._conv_forward(x, binarize_weight(self.weight), self.bias)


def binarize(model: Model, pointwise_only: bool = False, scope: tuple[str, ...] = ("",)) -> Model:
    """Swap every convolution inside `scope` (modules by name, with all they contain; "" is the whole model) but the
    first layer and the predictors (`model.first_layer()`, `model.head.predictors()`) for a BinaryConv2d, in place.
    `pointwise_only` keeps depthwise filters float: 9 weights per channel carry too little to survive a sign, and
    they are a sliver of a separable net's weights."""
    keep = {id(cast(Any, model).first_layer()), *(id(c) for c in cast(Any, model).head.predictors())}
    for parent_name, parent in list(model.named_modules()):
        for name, child in list(parent.named_children()):
            qualified = f"{parent_name}.{name}" if parent_name else name
            if (
                type(child) is nn.Conv2d
                and id(child) not in keep
                and not (pointwise_only and child.groups > 1)
                and _within(qualified, scope)
            ):
                binary = BinaryConv2d(
                    child.in_channels,
                    child.out_channels,
                    child.kernel_size,  # type: ignore[arg-type]
                    child.stride,  # type: ignore[arg-type]
                    child.padding,  # type: ignore[arg-type]
                    groups=child.groups,
                    bias=child.bias is not None,
                )
                binary.load_state_dict(child.state_dict())
                setattr(parent, name, binary)
    return model


def _within(name: str, scope: tuple[str, ...]) -> bool:
    """`backbone.dark4.1` holds `backbone.dark4.1.conv1`, not `backbone.dark4.10`."""
    return any(not prefix or name == prefix or name.startswith(prefix + ".") for prefix in scope)


def binarize_with_batchnorm(
    model: Model, images: Iterable[Tensor], pointwise_only: bool = False, scope: tuple[str, ...] = ("",)
) -> Model:
    """`binarize` for a network whose BatchNorms were folded away (YOLOX-nano from its ONNX): each binary
    convolution gets a BatchNorm after it again, set so that its outputs start with the mean and spread the float
    layer's had on `images`. A sign code changes a layer's output scale and offset per channel; without a
    BatchNorm to absorb that, every later layer sees a shifted input (binarised as is, the ReLU sibling scored 0 and
    8 epochs of distillation left it at 0.002 mAP). `fold_for_export` folds them back into per-channel scales."""
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    statistics = channel_statistics(model, convs, images, "output")
    places = [(parent, name, c) for parent in model.modules() for name, c in parent.named_children() if c in convs]
    binarize(model, pointwise_only, scope)
    for parent, name, float_conv in places:
        child = getattr(parent, name)
        if isinstance(child, BinaryConv2d):
            mean, std = statistics[cast(nn.Conv2d, float_conv)]
            norm = nn.BatchNorm2d(child.out_channels)
            with torch.no_grad():
                norm.weight.copy_(std)
                norm.bias.copy_(mean)
            setattr(parent, name, nn.Sequential(child, norm))
    return model


def binary_convs(model: nn.Module) -> list[BinaryConv2d]:
    return [m for m in model.modules() if isinstance(m, BinaryConv2d)]


def binary_share(model: nn.Module) -> float:
    """The share of the convolution weights that are 1-bit."""
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    return sum(m.weight.numel() for m in convs if isinstance(m, BinaryConv2d)) / sum(m.weight.numel() for m in convs)


def recalibrate_batchnorm(model: Model, images: Iterable[Tensor]) -> Model:
    """Every BatchNorm's running statistics measured afresh on `images`, for the weights the model holds now. The
    trainer exports an EMA of the latent weights, whose signs are a vote over the last steps and not the codes any
    live step ran; the EMA of the BatchNorm statistics describes those live codes, not the averaged ones."""
    batches = list(images)
    norms = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
    if norms and not batches:
        raise ValueError("no images: BatchNorm statistics come from the activations they produce")
    momenta = [norm.momentum for norm in norms]
    for norm in norms:
        norm.reset_running_stats()
        norm.momentum = None  # a plain average over the batches
    model.train()
    try:
        with torch.no_grad():
            for batch in batches:
                model(batch)
    finally:
        for norm, momentum in zip(norms, momenta):
            norm.momentum = momentum
    return model.eval()


# --- deployment: fold BN, keep the weights exactly sign x scale, pack them into the ONNX ----------------------


def fold_for_export(model: Model) -> Model:
    """Fold every BatchNorm into its convolution, and write every binary conv as a plain one holding exactly
    sign x per-channel scale (float16-rounded, as the packed file stores it). A binary conv stays exactly that
    after folding (BN only rescales each output channel)."""
    model = model.eval()
    for parent in list(model.modules()):
        children = list(parent.named_children())
        for (name, conv), (bn_name, bn) in itertools.pairwise(children):
            if isinstance(conv, nn.Conv2d) and isinstance(bn, nn.BatchNorm2d):
                setattr(parent, name, _fold(conv, bn))
                setattr(parent, bn_name, nn.Identity())
    for parent in list(model.modules()):
        for name, child in list(parent.named_children()):
            if isinstance(child, BinaryConv2d):
                setattr(parent, name, _fold(child, None))
    return model


def _fold(conv: nn.Conv2d, bn: nn.BatchNorm2d | None) -> nn.Conv2d:
    is_binary = isinstance(conv, BinaryConv2d)
    plain = nn.Conv2d(
        conv.in_channels,
        conv.out_channels,
        conv.kernel_size,  # type: ignore[arg-type]
        conv.stride,  # type: ignore[arg-type]
        conv.padding,  # type: ignore[arg-type]
        groups=conv.groups,
        bias=conv.bias is not None,
    ).eval()
    with torch.no_grad():
        plain.weight.copy_(binarize_weight(conv.weight) if is_binary else conv.weight)
        if conv.bias is not None:
            plain.bias.copy_(conv.bias)  # type: ignore[union-attr]
    fused = fuse_conv_bn_eval(plain, bn) if bn is not None else plain
    if is_binary:
        with torch.no_grad():
            sign = conv.weight >= 0
            if bn is not None:
                assert bn.running_var is not None
                gain = bn.weight / torch.sqrt(bn.running_var + bn.eps)
            else:
                gain = torch.ones(conv.out_channels)
            scale = binarize_weight(conv.weight).abs().amax(dim=(1, 2, 3)) * gain
            scale = scale.half().float()  # stored as float16: round here so the export is exactly this model
            fused.weight.copy_(torch.where(sign, 1.0, -1.0) * scale.view(-1, 1, 1, 1))
            if fused.bias is not None:
                fused.bias.copy_(fused.bias.half().float())
    return fused


def sign_and_scale(weight: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
    """(sign bits, per-channel scale) when every output channel is exactly +-scale, else None."""
    flat = weight.reshape(weight.shape[0], -1)
    scale = flat[:, :1]
    if flat.shape[1] < 2 or not np.all(np.abs(flat) == np.abs(scale)):
        return None
    # a negative BN gain makes a channel's scale negative: the bits carry the value's sign, the scale its size
    return (flat >= 0).reshape(-1), np.abs(scale).reshape(-1).astype(np.float32)


def pack_bits(bits: np.ndarray) -> np.ndarray:
    """Bit k of byte i holds element 8i + k (little bit order: what the in-graph unpacker reads)."""
    return np.packbits(bits.astype(np.uint8), bitorder="little")


def unpack_bits(packed: np.ndarray, count: int) -> np.ndarray:
    return np.unpackbits(packed, bitorder="little")[:count].astype(bool)


def export_binary_onnx(model: nn.Module, path: Path, input_size: tuple[int, int]) -> tuple[Path, int]:
    """Export with BN folded and every binary weight packed. Returns (path, number of packed convolutions)."""
    expected = len(binary_convs(model))
    export_onnx(fold_for_export(copy.deepcopy(model)), path, input_size)
    model = onnx.load(str(path))
    packed = pack_model_weights(model, expected)
    onnx.save(model, str(path))
    return path, packed


def pack_model_weights(model: onnx.ModelProto, expected: int) -> int:
    """Replace each Conv weight of the form sign x per-channel scale by its bits, packed into one uint8 array
    shared by all layers and unpacked once in-graph (BitShift, Mod, Cast: opset 17; ONNX Runtime folds it at
    load), then sliced per layer and multiplied by the layer's scale. Per-channel scales and biases are stored
    as float16 (fold_for_export rounds them so, so the graph is exactly the model that was evaluated)."""
    graph = model.graph
    initializers = {init.name: init for init in graph.initializer}
    layers: list[tuple[onnx.NodeProto, np.ndarray, np.ndarray, tuple[int, ...]]] = []
    for node in graph.node:
        if node.op_type == "Conv" and node.input[1] in initializers:
            code = sign_and_scale(numpy_helper.to_array(initializers[node.input[1]]))
            if code is not None:
                shape = tuple(numpy_helper.to_array(initializers[node.input[1]]).shape)
                layers.append((node, *code, shape))
    if len(layers) != expected:
        raise ValueError(f"found {len(layers)} sign x scale convolutions, expected {expected}")
    all_bits = np.concatenate([bits for _, bits, _, _ in layers])
    new_inits = [
        numpy_helper.from_array(pack_bits(all_bits), "bin_packed"),
        numpy_helper.from_array(np.arange(BITS_PER_BYTE, dtype=np.uint8).reshape(1, -1), "bin_shifts"),
        numpy_helper.from_array(np.array(2, dtype=np.uint8), "bin_two_u8"),
        numpy_helper.from_array(np.array(2.0, dtype=np.float32), "bin_two"),
        numpy_helper.from_array(np.array(1.0, dtype=np.float32), "bin_one"),
        numpy_helper.from_array(np.array([1], dtype=np.int64), "bin_axis1"),
        numpy_helper.from_array(np.array([-1], dtype=np.int64), "bin_flat"),
    ]
    nodes = _unpack_all("bin_packed", "bin_signs")
    offset = 0
    for i, (node, bits, scale, shape) in enumerate(layers):
        prefix = f"bin{i}"
        new_inits += [
            numpy_helper.from_array(np.array([offset], dtype=np.int64), f"{prefix}_start"),
            numpy_helper.from_array(np.array([offset + bits.size], dtype=np.int64), f"{prefix}_end"),
            numpy_helper.from_array(np.array(shape, dtype=np.int64), f"{prefix}_shape"),
            numpy_helper.from_array(scale.astype(np.float16).reshape(-1, 1, 1, 1), f"{prefix}_scale16"),
        ]
        offset += bits.size
        nodes += [
            helper.make_node("Slice", ["bin_signs", f"{prefix}_start", f"{prefix}_end"], [f"{prefix}_flat"]),
            helper.make_node("Reshape", [f"{prefix}_flat", f"{prefix}_shape"], [f"{prefix}_signs"]),
            helper.make_node("Cast", [f"{prefix}_scale16"], [f"{prefix}_scale"], to=TensorProto.FLOAT),
            helper.make_node("Mul", [f"{prefix}_signs", f"{prefix}_scale"], [f"{prefix}_weight"]),
        ]
        graph.initializer.remove(initializers[node.input[1]])
        node.input[1] = f"{prefix}_weight"
        if len(node.input) > 2 and node.input[2] in initializers:
            bias = numpy_helper.to_array(initializers[node.input[2]])
            graph.initializer.remove(initializers[node.input[2]])
            new_inits.append(numpy_helper.from_array(bias.astype(np.float16), f"{prefix}_bias16"))
            nodes.append(helper.make_node("Cast", [f"{prefix}_bias16"], [f"{prefix}_bias"], to=TensorProto.FLOAT))
            node.input[2] = f"{prefix}_bias"
    graph.initializer.extend(new_inits)
    nodes += list(graph.node)
    del graph.node[:]
    graph.node.extend(nodes)
    onnx.checker.check_model(model)
    return len(layers)


def _unpack_all(packed: str, output: str) -> list[onnx.NodeProto]:
    """packed uint8 [M] -> bits [M, 8] (bit k of byte i is weight 8i + k) -> float +-1 [8M]."""
    return [
        helper.make_node("Unsqueeze", [packed, "bin_axis1"], ["bin_column"]),
        helper.make_node("BitShift", ["bin_column", "bin_shifts"], ["bin_shifted"], direction="RIGHT"),
        helper.make_node("Mod", ["bin_shifted", "bin_two_u8"], ["bin_bit"]),
        helper.make_node("Cast", ["bin_bit"], ["bin_bit_float"], to=TensorProto.FLOAT),
        helper.make_node("Reshape", ["bin_bit_float", "bin_flat"], ["bin_bits"]),
        helper.make_node("Mul", ["bin_bits", "bin_two"], ["bin_doubled"]),
        helper.make_node("Sub", ["bin_doubled", "bin_one"], [output]),
    ]
