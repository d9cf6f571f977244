"""The trainable parent: YOLOX-nano as a torch module with the COCO ONNX file's weights is the same detector.

Checked against ONNX Runtime on a real image (to float precision) and on the whole coco-val-dev set (the same
mAP through edged's own eval), then the family's forms of it: the class rows kept, the exported file that serves
any input size, and the compressions the factory applies (pruning, low-rank) keeping a working detector.
Needs the [build] extra (torch, onnx).
"""

from __future__ import annotations

import copy
from pathlib import Path

import cv2
import numpy as np
import onnxruntime as ort
import pytest

from tests.conftest import require_or_skip

torch = require_or_skip("torch", reason="torch is in the [build] extra, not in `make test`'s install")
require_or_skip("onnx")

from edged.errors import ModelError  # noqa: E402
from edged.factory.train.data import LABELS  # noqa: E402
from edged.factory.train.lowrank import factorize  # noqa: E402
from edged.factory.train.student import count_macs, export_onnx  # noqa: E402
from edged.factory.train.yolox import YoloxNano, from_family_onnx, from_onnx, with_activation  # noqa: E402
from edged.vision.postprocess import PostprocessOptions  # noqa: E402
from edged.zoo.datasets import open_eval_set  # noqa: E402
from edged.zoo.eval import evaluate  # noqa: E402
from edged.zoo.manifest import load_zoo  # noqa: E402

COCO_ROWS = [0, 2, 3, 5, 7]  # person, car, motorbike, bus, truck in COCO's 80


@pytest.fixture(scope="module")
def parent_file(shared: Path) -> Path:
    return shared / "models" / "coco" / "yolox_nano_416.onnx"


@pytest.fixture(scope="module")
def coco_names(shared: Path) -> list[str]:
    return (shared / "models" / "coco" / "coco.names").read_text().splitlines()


@pytest.fixture(scope="module")
def family_parent(parent_file: Path, coco_names: list[str]) -> YoloxNano:
    return from_onnx(parent_file, coco_names, LABELS)


@pytest.fixture(scope="module")
def image(val_dev: Path) -> np.ndarray:
    return cv2.resize(cv2.imread(str(val_dev / "images" / "000000000139.jpg")), (416, 416))


def test_torch_parent_matches_onnx_runtime_to_float_precision(parent_file, family_parent, image):
    reference = ort.InferenceSession(str(parent_file)).run(
        None, {"images": image.astype(np.float32).transpose(2, 0, 1)[None]}
    )[0]
    with torch.no_grad():
        mine = family_parent.predict(torch.from_numpy(image.astype(np.float32).transpose(2, 0, 1)[None] / 255.0))
    mine = mine[0].numpy()
    expected_boxes = np.concatenate([reference[0, :, :2] - 0.5, reference[0, :, 2:4]], axis=1)
    expected_scores = reference[0, :, 4:5] * reference[0, :, 5:][:, COCO_ROWS]
    assert np.abs(mine[:, 4:] - expected_scores).max() < 1e-5
    assert np.abs(mine[:, :4] - expected_boxes).max() < 1e-3 * max(1.0, np.abs(expected_boxes).max())
    assert expected_scores.max() > 0.25  # the image has people the parent sees: the comparison is not of zeros


def test_loss_logits_are_the_parents_scores(family_parent, image):
    x = torch.from_numpy(image.astype(np.float32).transpose(2, 0, 1)[None] / 255.0)
    with torch.no_grad():
        logits, scores = family_parent(x)[..., 4:], family_parent.predict(x)[..., 4:]
    assert torch.allclose(torch.sigmoid(logits), scores, atol=1e-6)


def test_torch_parent_scores_the_same_map_as_the_onnx_parent_on_coco_val_dev(
    parent_file, coco_names, coco_zoo, val_dev, tmp_path
):
    """All 80 classes kept, exported by the factory, evaluated by edged exactly as the third-party file."""
    from edged.factory.train.zoo_writer import Entry, provenance, write_zoo

    model = from_onnx(parent_file, coco_names, tuple(coco_names))
    exported = export_onnx(model, tmp_path / "yolox80.onnx", (416, 416))
    write_zoo(tmp_path, coco_names, [Entry("torch-parent", "baseline", exported, 416, provenance("test", [], 0))])
    manifest = (tmp_path / "zoo.yaml").read_text().replace("letterbox_align: center", "letterbox_align: top-left")
    (tmp_path / "zoo.yaml").write_text(manifest)  # the parent's own letterbox, to compare like with like
    options = PostprocessOptions.for_evaluation()
    mine = evaluate(load_zoo(tmp_path).open_detector("torch-parent", postprocess=options), open_eval_set(val_dev), "t")
    theirs = evaluate(coco_zoo.open_detector("yolox-nano-416", postprocess=options), open_eval_set(val_dev), "o")
    assert mine.map50_95 == pytest.approx(theirs.map50_95, abs=2e-4)
    assert mine.map50 == pytest.approx(theirs.map50, abs=2e-4)
    assert theirs.map50_95 > 0.3


def test_one_exported_file_serves_every_input_size(family_parent, tmp_path):
    path = export_onnx(family_parent, tmp_path / "any.onnx", (416, 416), any_size=True)
    session = ort.InferenceSession(str(path))
    assert session.get_outputs()[0].shape[:2] == [1, 4 + len(LABELS)]
    for height, width in ((320, 320), (416, 416), (384, 640)):
        x = np.random.default_rng(0).random((1, 3, height, width), dtype=np.float32)
        out = session.run(None, {session.get_inputs()[0].name: x})[0]
        with torch.no_grad():
            expected = family_parent.decoded(torch.from_numpy(x)).numpy()
        assert out.shape == (1, 9, sum((height // s) * (width // s) for s in (8, 16, 32)))
        assert np.abs(out - expected).max() < 1e-2


def test_a_file_that_is_not_yolox_nano_is_refused_by_name(shared, coco_names):
    with pytest.raises(ModelError, match="not a YOLOX-nano"):
        from_onnx(shared / "models" / "coco" / "fastestdet_352.onnx", coco_names, LABELS)


def test_a_label_the_parent_does_not_know_is_refused(parent_file, coco_names):
    with pytest.raises(ModelError, match="no class 'drone'"):
        from_onnx(parent_file, coco_names, ("person", "drone"))


def test_relu_sibling_keeps_the_weights_and_changes_only_the_activation(family_parent):
    relu = with_activation(copy.deepcopy(family_parent), torch.nn.ReLU)
    assert not any(isinstance(m, torch.nn.SiLU) for m in relu.modules())
    assert all(torch.equal(a, b) for a, b in zip(relu.state_dict().values(), family_parent.state_dict().values()))


def test_low_rank_fitted_to_responses_beats_plain_svd_and_saves_multiplies(family_parent, image):
    """The same ranks; the response fit reconstructs the network's output better than the weight SVD."""
    x = torch.from_numpy(image.astype(np.float32).transpose(2, 0, 1)[None] / 255.0)
    fitted = copy.deepcopy(family_parent)
    layers = factorize(fitted, 0.375, [*fitted.head.predictors(), fitted.first_layer()], [x])
    assert layers and all(f.rank % 8 == 0 and f.rank < min(f.in_channels, f.out_channels) for f in layers)
    assert count_macs(fitted, (416, 416)) < 0.85 * count_macs(family_parent, (416, 416))
    with torch.no_grad():
        reference = family_parent.predict(x)
        fitted_error = (fitted.predict(x) - reference)[..., :4].abs().mean()
    # plain SVD at the same ranks: the covariance of the responses replaced by identity (weights alone)
    plain = copy.deepcopy(family_parent)
    import edged.factory.train.lowrank as lowrank

    original = lowrank._output_statistics
    try:
        lowrank._output_statistics = lambda model, convs, images: {  # type: ignore[assignment]
            name: (torch.zeros(conv.out_channels, dtype=torch.float64), _weight_gram(conv))
            for name, conv in convs.items()
        }
        factorize(plain, 0.375, [*plain.head.predictors(), plain.first_layer()], [x])
    finally:
        lowrank._output_statistics = original
    with torch.no_grad():
        plain_error = (plain.predict(x) - reference)[..., :4].abs().mean()
    assert fitted_error < plain_error


def _weight_gram(conv: torch.nn.Conv2d) -> torch.Tensor:
    """W W^T: the output covariance for white inputs, whose top eigenvectors are the weights' left singular ones."""
    w = conv.weight.reshape(conv.out_channels, -1).double()
    return w @ w.T


def test_pruning_removes_channels_and_keeps_the_detections_layout(family_parent, image):
    from edged.factory.train.prune import prune_model

    pruned = prune_model(family_parent, 0.5, [_tensor(image)])
    x = torch.zeros(1, 3, 320, 320)
    with torch.no_grad():
        assert pruned(x).shape == family_parent(x).shape
    assert count_macs(pruned, (416, 416)) < 0.7 * count_macs(family_parent, (416, 416))
    for predictor in pruned.head.predictors():  # the detections are never pruned
        assert predictor.out_channels in (1, 4, len(LABELS))


def _tensor(image: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(image.astype(np.float32).transpose(2, 0, 1)[None] / 255.0)


@pytest.mark.parametrize("constant", [0.0, 0.3], ids=["silent", "constant"])
def test_pruning_channels_that_carry_no_information_leaves_the_network_unchanged(family_parent, image, constant):
    """Channels made constant (weights zeroed; bias `constant`) are the first to go, and what they added stays in
    their readers' biases: the pruned network computes what the unpruned one did. A depthwise layer pads with zeros
    (a constant is not constant at the border), so there only silent channels are exact."""
    from edged.factory.train.prune import free_channel_groups, prune_model

    model = with_activation(copy.deepcopy(family_parent).fuse_focus(), torch.nn.ReLU)
    x = _tensor(image)
    with torch.no_grad():
        for group in free_channel_groups(model):
            has_depthwise = any(m.role == "depthwise" for m in group)
            producers = [m.conv for m in group if m.role != "in"]
            count = producers[0].out_channels
            for conv in producers:
                conv.weight[: count // 2] = 0
                conv.bias[: count // 2] = 0.0 if has_depthwise else constant
        expected = model(x)
        pruned = prune_model(model, 0.5, [x])
        assert count_macs(pruned, (416, 416)) < 0.7 * count_macs(model, (416, 416))
        torch.testing.assert_close(pruned(x), expected, rtol=1e-4, atol=1e-3)


def test_pruning_without_images_is_refused(family_parent):
    from edged.factory.train.prune import prune_model

    with pytest.raises(ValueError, match="no calibration images"):
        prune_model(family_parent, 0.25, [])


def test_a_pruned_relu_sibling_comes_back_from_its_exported_file_as_the_same_function(family_parent, image, tmp_path):
    """The derive stage's source: the shipped ONNX read back into torch (channel counts from the file)."""
    from edged.factory.tflite import check_against_torch
    from edged.factory.train.prune import prune_model

    template = copy.deepcopy(family_parent).fuse_focus()
    x = _tensor(image)
    path = export_onnx(prune_model(template, 0.25, [x]), tmp_path / "pruned.onnx", (416, 416))
    back = from_family_onnx(path, template)
    assert count_macs(back, (416, 416)) < 0.9 * count_macs(template, (416, 416))
    agreement = check_against_torch(back, path, "onnx", x, score_threshold=0.0)  # every cell
    assert agreement.cells == 3549 and agreement.within(box_px=1e-2, score=1e-5)


def test_a_file_stored_in_float16_comes_back_as_the_function_it_runs(family_parent, image, tmp_path):
    """The shipped siblings keep float16 weights behind a Cast; read back, they are what ONNX Runtime runs (the
    shipped drone specialist, for one, can be read back to be trained further)."""
    import onnx

    from edged.factory.onnx_graph import store_weights_float16
    from edged.factory.tflite import check_against_torch

    template = copy.deepcopy(family_parent).fuse_focus()
    x = _tensor(image)
    path = export_onnx(template, tmp_path / "half.onnx", (416, 416))
    model = onnx.load(str(path))
    assert store_weights_float16(model) > 0
    onnx.save(model, str(path))
    back = from_family_onnx(path, template)
    agreement = check_against_torch(back, path, "onnx", x, score_threshold=0.0)
    assert agreement.cells == 3549 and agreement.within(box_px=1e-2, score=1e-5)
    # and the float16 rounding is really there: the weights read back are not the float32 ones
    assert not torch.equal(back.head.cls_preds[0].weight, template.head.cls_preds[0].weight)


def test_a_file_of_another_architecture_is_not_read_back_as_a_family_member(shared, family_parent):
    with pytest.raises(ModelError, match="not a YOLOX-nano"):
        from_family_onnx(shared / "models" / "coco" / "nanodet_m_320.onnx", family_parent)


def test_a_binarised_sibling_gets_batchnorms_that_start_at_the_float_layers_statistics(family_parent, image, tmp_path):
    """YOLOX's BatchNorms were folded away; the binary sibling gets them back (initialised to each float layer's
    output mean and spread), and its packed ONNX computes what the torch module does in eval mode."""
    from edged.factory.tflite import check_against_torch
    from edged.factory.train.binary import BinaryConv2d, binarize_with_batchnorm, export_binary_onnx

    model = copy.deepcopy(family_parent).fuse_focus()
    first_pointwise = model.backbone.dark2[0][1][0]  # DWConv(16, 32): its 1x1 convolution
    x = _tensor(image)
    with torch.no_grad():
        float_out = first_pointwise(model.backbone.dark2[0][0](model.backbone.stem(x)))
    binary = binarize_with_batchnorm(model, [x], pointwise_only=True)
    pair = binary.backbone.dark2[0][1][0]
    assert isinstance(pair[0], BinaryConv2d) and isinstance(pair[1], torch.nn.BatchNorm2d)
    torch.testing.assert_close(pair[1].bias.detach(), float_out.mean(dim=(0, 2, 3)), rtol=1e-4, atol=1e-4)
    assert not any(isinstance(m, BinaryConv2d) and m.groups > 1 for m in binary.modules())  # depthwise stay float
    binary.eval()
    path, packed = export_binary_onnx(binary, tmp_path / "binary.onnx", (416, 416))
    assert packed == sum(isinstance(m, BinaryConv2d) for m in binary.modules()) > 50
    agreement = check_against_torch(binary, path, "onnx", x, score_threshold=0.0)
    assert agreement.within(box_px=0.5, score=1e-3)  # float16 scales in the file


def test_a_binary_scope_leaves_the_layers_outside_it_float(family_parent, image):
    from edged.factory.train.binary import BinaryConv2d, binarize_with_batchnorm, binary_share

    model = copy.deepcopy(family_parent).fuse_focus()
    binary = binarize_with_batchnorm(model, [_tensor(image)], pointwise_only=True, scope=("backbone.dark5", "neck"))
    names = [name for name, m in binary.named_modules() if isinstance(m, BinaryConv2d)]
    assert names and all(name.startswith(("backbone.dark5", "neck")) for name in names)
    assert not isinstance(binary.backbone.dark2[0][1][0], torch.nn.Sequential)  # outside: untouched, no BatchNorm
    assert 0.5 < binary_share(binary) < 1.0


def test_recalibration_measures_the_batchnorms_for_the_signs_the_model_holds(family_parent, image):
    from edged.factory.train.binary import binarize_with_batchnorm, recalibrate_batchnorm

    x = _tensor(image)
    binary = binarize_with_batchnorm(copy.deepcopy(family_parent).fuse_focus(), [x], pointwise_only=True)
    pair = binary.neck.c3_n4.conv3[0]
    seen = []
    handle = pair[0].register_forward_hook(lambda m, _, out: seen.append(out.detach()))
    recalibrate_batchnorm(binary, [x])
    handle.remove()
    torch.testing.assert_close(pair[1].running_mean, seen[0].mean(dim=(0, 2, 3)), rtol=1e-4, atol=1e-4)
    assert not binary.training and pair[1].momentum == 0.1  # back in eval mode, its momentum restored
    kept = pair[1].running_mean.clone()
    with pytest.raises(ValueError, match="no images"):
        recalibrate_batchnorm(binary, [])
    assert torch.equal(pair[1].running_mean, kept)  # refused before touching what it had


def test_the_sensitivity_sweep_offers_every_pointwise_layer_but_the_first_and_the_predictors(family_parent):
    from edged.factory.train.binary_sensitivity import candidate_layers

    model = copy.deepcopy(family_parent).fuse_focus()
    layers = candidate_layers(model)
    modules = dict(model.named_modules())
    assert len(layers) == 73 and all(modules[name].groups == 1 for name in layers)
    excluded = {id(model.first_layer()), *(id(c) for c in model.head.predictors())}
    assert not excluded & {id(modules[name]) for name in layers}


def test_the_sensitivity_sweep_names_the_missing_tune_split(tmp_path):
    from edged.factory.train.binary_sensitivity import main

    with pytest.raises(SystemExit, match=r"family-tune is missing: run the family build's data stage"):
        main(["--work", str(tmp_path)])


def test_the_family_build_names_what_is_missing_from_a_wrong_shared_folder(tmp_path, capsys):
    from edged.factory.train.family import main

    with pytest.raises(SystemExit) as stop:
        main(["--shared", str(tmp_path), "--work", str(tmp_path / "work"), "--out", str(tmp_path / "zoo")])
    assert stop.value.code == 2
    err = capsys.readouterr().err
    assert "missing models/coco/yolox_nano_416.onnx" in err and "data/distill/drone-people" in err
    with pytest.raises(SystemExit):
        main(["--stages", "parent,sideways"])
    assert "unknown stages: sideways" in capsys.readouterr().err


def test_silu_blends_into_relu_over_its_ramp_and_is_then_exactly_relu(family_parent):
    from edged.factory.train.yolox import SiluToRelu

    blended = with_activation(copy.deepcopy(family_parent), lambda: SiluToRelu(4))
    relu = with_activation(copy.deepcopy(family_parent), torch.nn.ReLU)
    x = torch.rand(1, 3, 64, 64)
    with torch.no_grad():
        assert torch.allclose(blended.eval()(x), family_parent(x))  # step 0: still the SiLU parent
        blended.train()
        for _ in range(2):
            blended(x)
        halfway = blended.eval()(x)
        assert not torch.allclose(halfway, family_parent(x)) and not torch.allclose(halfway, relu(x))
        blended.train()
        for _ in range(2):
            blended(x)
        assert torch.allclose(blended.eval()(x), relu(x))  # ramp done: exactly ReLU
    steps = [int(v) for k, v in blended.state_dict().items() if k.endswith("steps")]
    assert steps and set(steps) == {4}  # the ramp's position is saved with the weights (a resumed run goes on)
