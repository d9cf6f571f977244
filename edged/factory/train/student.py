"""The student: a compact anchor-free detector made of depthwise-separable and inverted-bottleneck blocks.

Three prediction levels (strides 8, 16, 32) fed by a light top-down FPN. Stride 8 is what keeps a 10-pixel
person visible at 640 input. Every cell predicts (dx, dy, log w, log h) relative to its centre and one logit per
class. `ExportModel` decodes that in-graph into the YOLOv8 layout [1, 4 + nc, N] (cx, cy, w, h in input pixels,
sigmoid scores), so edged's existing `yolov8` decoder reads the student and no new decoder is needed.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, cast

import onnx
import torch
from torch import Tensor, nn

STRIDES = (8, 16, 32)
PRIOR_PROBABILITY = 0.01  # initial class score, so the first steps are not drowned by easy negatives
MAX_LOG_SIZE = 8.0  # exp(8) * 32 px covers any box; the clamp keeps early training finite


@dataclass(frozen=True)
class StudentConfig:
    """Architecture knobs. `width` scales every channel count; resolution is chosen at export time."""

    num_classes: int
    width: float = 1.0
    stem: int = 16
    stages: tuple[tuple[int, int], ...] = ((24, 0), (40, 2), (80, 3), (128, 2))  # strides 4..32: (channels, blocks)
    neck: int = 64
    expand: int = 3
    labels: tuple[str, ...] = field(default_factory=tuple)

    def channels(self, base: int) -> int:
        return make_divisible(base * self.width)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> StudentConfig:
        data = dict(data)
        data["stages"] = tuple(tuple(s) for s in data["stages"])
        data["labels"] = tuple(data.get("labels", ()))
        return cls(**data)


def make_divisible(value: float, divisor: int = 8) -> int:
    """Channel counts in multiples of 8: what vectorised CPU kernels want."""
    return max(divisor, int(value + divisor / 2) // divisor * divisor)


class ConvBnAct(nn.Sequential):
    def __init__(self, cin: int, cout: int, kernel: int = 1, stride: int = 1, groups: int = 1, act: bool = True):
        super().__init__(
            nn.Conv2d(cin, cout, kernel, stride, kernel // 2, groups=groups, bias=False),
            nn.BatchNorm2d(cout),
            nn.ReLU(inplace=True) if act else nn.Identity(),
        )


class DepthwiseSeparable(nn.Sequential):
    def __init__(self, cin: int, cout: int, stride: int = 1):
        super().__init__(ConvBnAct(cin, cin, 3, stride, groups=cin), ConvBnAct(cin, cout, 1))


class InvertedResidual(nn.Module):
    """MobileNetV2 bottleneck: expand 1x1, depthwise 3x3, project 1x1 (linear); residual when shapes allow."""

    def __init__(self, cin: int, cout: int, stride: int, expand: int):
        super().__init__()
        hidden = cin * expand
        self.block = nn.Sequential(
            ConvBnAct(cin, hidden, 1),
            ConvBnAct(hidden, hidden, 3, stride, groups=hidden),
            ConvBnAct(hidden, cout, 1, act=False),
        )
        self.residual = stride == 1 and cin == cout

    def forward(self, x: Tensor) -> Tensor:
        y = self.block(x)
        return x + y if self.residual else y


class Backbone(nn.Module):
    """Stride-2 stem, then one stage per stride (4, 8, 16, 32): a depthwise-separable stride-2 layer followed by
    inverted bottlenecks. Downsampling without expansion keeps the high-resolution activations, which set the
    cost of a small net on a CPU, thin."""

    def __init__(self, cfg: StudentConfig):
        super().__init__()
        cin = cfg.channels(cfg.stem)
        self.stem = ConvBnAct(3, cin, 3, 2)
        self.stages = nn.ModuleList()
        self.out_channels: list[int] = []
        for base, blocks in cfg.stages:
            cout = cfg.channels(base)
            stage: list[nn.Module] = [DepthwiseSeparable(cin, cout, 2)]
            stage += [InvertedResidual(cout, cout, 1, cfg.expand) for _ in range(blocks)]
            self.stages.append(nn.Sequential(*stage))
            self.out_channels.append(cout)
            cin = cout
        self.out_channels = self.out_channels[-len(STRIDES) :]

    def forward(self, x: Tensor) -> list[Tensor]:
        x = self.stem(x)
        features = []
        for stage in self.stages:
            x = stage(x)
            features.append(x)
        return features[-len(STRIDES) :]


class TopDownNeck(nn.Module):
    """FPN without the bottom-up path: lateral 1x1s, nearest upsampling, a depthwise-separable smoother."""

    def __init__(self, in_channels: list[int], width: int):
        super().__init__()
        self.laterals = nn.ModuleList(ConvBnAct(c, width, 1) for c in in_channels)
        self.smooth = nn.ModuleList([DepthwiseSeparable(width, width) for _ in in_channels])
        self.up = nn.Upsample(scale_factor=2.0, mode="nearest")

    def forward(self, features: list[Tensor]) -> list[Tensor]:
        laterals = [lat(f) for lat, f in zip(self.laterals, features)]
        outs = [laterals[-1]]
        for lateral in reversed(laterals[:-1]):
            outs.insert(0, lateral + self.up(outs[0]))
        return [smooth(o) for smooth, o in zip(self.smooth, outs)]


class Head(nn.Module):
    """Per level: one depthwise-separable block, then a 1x1 box predictor and a 1x1 class predictor."""

    def __init__(self, width: int, num_classes: int, levels: int):
        super().__init__()
        self.towers = nn.ModuleList(DepthwiseSeparable(width, width) for _ in range(levels))
        self.box = nn.ModuleList(nn.Conv2d(width, 4, 1) for _ in range(levels))
        self.cls = nn.ModuleList(nn.Conv2d(width, num_classes, 1) for _ in range(levels))
        prior_bias = -torch.log(torch.tensor((1 - PRIOR_PROBABILITY) / PRIOR_PROBABILITY)).item()
        for conv in self.predictors():
            assert conv.bias is not None
            is_class = any(conv is c for c in self.cls)
            nn.init.constant_(conv.bias, prior_bias if is_class else 0.0)

    def predictors(self) -> list[nn.Conv2d]:
        """The last layers: kept out of pruning and binarisation."""
        return [m for m in [*self.box, *self.cls] if isinstance(m, nn.Conv2d)]

    def forward(self, features: list[Tensor]) -> Tensor:
        outputs = []
        for tower, box, cls, f in zip(self.towers, self.box, self.cls, features):
            t = tower(f)
            level = torch.cat([box(t), cls(t)], dim=1)  # [B, 4 + C, H, W]
            outputs.append(level.flatten(2))
        return torch.cat(outputs, dim=2).transpose(1, 2)  # [B, N, 4 + C]


class Student(nn.Module):
    """Raw predictions [B, N, 4 + C]: per cell (dx, dy, log w, log h) in strides, then class logits."""

    def __init__(self, cfg: StudentConfig):
        super().__init__()
        self.cfg = cfg
        self.backbone = Backbone(cfg)
        neck = cfg.channels(cfg.neck)
        self.neck = TopDownNeck(self.backbone.out_channels, neck)
        self.head = Head(neck, cfg.num_classes, len(STRIDES))

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.neck(self.backbone(x)))

    def first_layer(self) -> nn.Conv2d:
        conv = self.backbone.stem[0]
        assert isinstance(conv, nn.Conv2d)
        return conv


def anchor_grid(height: int, width: int, device: torch.device | None = None) -> tuple[Tensor, Tensor]:
    """Cell centres [N, 2] in input pixels and their strides [N, 1], in the order the head emits them."""
    centres, strides = [], []
    for stride in STRIDES:
        ys, xs = torch.meshgrid(
            torch.arange(height // stride, device=device, dtype=torch.float32),
            torch.arange(width // stride, device=device, dtype=torch.float32),
            indexing="ij",
        )
        centres.append((torch.stack([xs, ys], dim=-1).reshape(-1, 2) + 0.5) * stride)
        strides.append(torch.full((xs.numel(), 1), float(stride), device=device))
    return torch.cat(centres), torch.cat(strides)


def decode_boxes(raw: Tensor, centres: Tensor, strides: Tensor) -> Tensor:
    """Raw (dx, dy, log w, log h) -> (cx, cy, w, h) in input pixels."""
    xy = centres + raw[..., :2] * strides
    wh = torch.exp(raw[..., 2:4].clamp(max=MAX_LOG_SIZE)) * strides
    return torch.cat([xy, wh], dim=-1)


class ExportModel(nn.Module):
    """The student as edged runs it: decoded boxes and sigmoid scores in the YOLOv8 layout [1, 4 + nc, N].

    Boxes are decoded per level against row and column coordinates that broadcast, so the file carries H + W
    numbers per level instead of an H x W grid (which at 640x640 would outweigh a binary network's weights).
    """

    def __init__(self, student: nn.Module, input_size: tuple[int, int], probabilities: bool | None = None):
        """`probabilities`: the student's class outputs are already scores (default: when it has `predict`)."""
        super().__init__()
        self.student = student
        self.probabilities = hasattr(student, "predict") if probabilities is None else probabilities
        width, height = input_size
        self.levels = [(height // s, width // s, float(s)) for s in STRIDES]
        for i, (h, w, _) in enumerate(self.levels):
            self.register_buffer(f"columns{i}", torch.arange(w, dtype=torch.float32) + 0.5)
            self.register_buffer(f"rows{i}", (torch.arange(h, dtype=torch.float32) + 0.5).view(h, 1))
        self.any_size = False  # set by export_onnx(any_size=True): the model decodes on its own grids

    def forward(self, x: Tensor) -> Tensor:
        if self.any_size:  # a model that decodes itself on any grid (YOLOX)
            return cast(Any, self.student).decoded(x)  # type: ignore[no-any-return]
        # a model whose scores are not one sigmoid of a logit (YOLOX: objectness x class) gives them itself
        raw = cast(Any, self.student).predict(x) if hasattr(self.student, "predict") else self.student(x)
        outputs, start = [], 0
        for i, (h, w, stride) in enumerate(self.levels):
            level = raw[:, start : start + h * w].reshape(raw.shape[0], h, w, raw.shape[2])
            start += h * w
            cx = (level[..., 0] + getattr(self, f"columns{i}")) * stride
            cy = (level[..., 1] + getattr(self, f"rows{i}")) * stride
            wh = torch.exp(level[..., 2:4].clamp(max=MAX_LOG_SIZE)) * stride
            scores = level[..., 4:] if self.probabilities else torch.sigmoid(level[..., 4:])
            decoded = torch.cat([cx.unsqueeze(-1), cy.unsqueeze(-1), wh, scores], dim=-1)
            outputs.append(decoded.reshape(raw.shape[0], h * w, raw.shape[2]))
        return torch.cat(outputs, dim=1).transpose(1, 2)


def export_onnx(student: nn.Module, path: Path, input_size: tuple[int, int], any_size: bool = False) -> Path:
    """Write a single-input, single-output ONNX (opset 17) for an input size (width, height); with `any_size`,
    height and width stay free in the file (for a model that decodes itself), so variants at several input sizes
    can share it."""
    width, height = input_size
    model = ExportModel(student, input_size).eval()
    model.any_size = any_size
    dummy = torch.zeros(1, 3, height, width)
    path.parent.mkdir(parents=True, exist_ok=True)
    with torch.no_grad():
        torch.onnx.export(
            model,
            (dummy,),
            str(path),
            input_names=["images"],
            output_names=["detections"],
            opset_version=17,
            do_constant_folding=True,
            dynamic_axes={"images": {2: "height", 3: "width"}, "detections": {2: "cells"}} if any_size else None,
            dynamo=False,
        )
    compact_names(path)
    if any_size:  # the exporter leaves the batch and channel dims of a dynamic output symbolic: pin them
        with torch.no_grad():
            shape = model(dummy).shape
        onnx_model = onnx.load(str(path))
        dims = onnx_model.graph.output[0].type.tensor_type.shape.dim
        dims[0].dim_value, dims[1].dim_value = shape[0], shape[1]
        onnx.save(onnx_model, str(path))
    return path


def compact_names(path: Path) -> None:
    """Short tensor names and no node names: in a small model the exporter's long paths are a real share of the
    file. The graph itself is unchanged."""
    model = onnx.load(str(path))
    graph = model.graph
    keep = {v.name for v in graph.input} | {v.name for v in graph.output}
    renamed: dict[str, str] = {}

    def short(name: str) -> str:
        if not name or name in keep:
            return name
        return renamed.setdefault(name, f"t{len(renamed)}")

    for init in graph.initializer:
        init.name = short(init.name)
    for node in graph.node:
        node.name = ""
        node.input[:] = [short(n) for n in node.input]
        node.output[:] = [short(n) for n in node.output]
    del graph.value_info[:]
    onnx.save(model, str(path))


def count_macs(model: nn.Module, input_size: tuple[int, int]) -> int:
    """Multiply-accumulates of every convolution for one image, counted with forward hooks."""
    total = 0

    def hook(module: nn.Module, _inputs: tuple[Tensor, ...], output: Tensor) -> None:
        nonlocal total
        assert isinstance(module, nn.Conv2d)
        kh, kw = module.kernel_size
        total += output.numel() * (module.in_channels // module.groups) * kh * kw

    handles = [m.register_forward_hook(hook) for m in model.modules() if isinstance(m, nn.Conv2d)]
    width, height = input_size
    was_training = model.training
    model.eval()
    with torch.no_grad():
        model(torch.zeros(1, 3, height, width))
    model.train(was_training)
    for handle in handles:
        handle.remove()
    return total


def count_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
