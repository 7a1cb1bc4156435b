"""The UDA works' test protocol (:data:`deeplabv2.protocol.UDA_PROTOCOL`) against a reference of
their pipeline written here from their description (AdaptSegNet's ``evaluate_cityscapes.py`` and
``compute_iou.py``, ADVENT's ``eval_UDA.py``): PIL bicubic resize to 1024x512, BGR minus their
mean, one forward, logits stretched to the image with ``align_corners=True``, arg-max; one
confusion matrix over all images, NaN-mean of the per-class IoUs.

The tests at Cityscapes' size (2048x1024 images, the network at 1024x512) are ``slow``; the
default suite runs the same comparisons with images and resizing 4 times smaller."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from deeplabv2 import Segmenter
from deeplabv2.cli import main
from deeplabv2.cli.main import build_parser
from deeplabv2.cli.options import build_segmenter, protocol_overrides
from deeplabv2.data import CITYSCAPES_CLASSES, Cityscapes
from deeplabv2.evaluate import evaluate
from deeplabv2.models import DeepLabV2, save_weights
from deeplabv2.protocol import (
    PORT_PROTOCOL,
    RELEASE_PROTOCOL,
    UDA_PROTOCOL,
    EvalProtocol,
    PretrainedInfo,
)
from deeplabv2.segmenter_setup import compiled

from .conftest import randomize_batchnorm

#: their mean (B, G, R), as their scripts write it
THEIR_MEAN = np.array((104.00698793, 116.66876762, 122.67891434), dtype=np.float32)


@pytest.fixture(scope="module")
def uda_model() -> DeepLabV2:
    """A one-block-per-stage DeepLab v2 with Cityscapes' 19 classes and the UDA protocol."""
    torch.manual_seed(3)
    model = randomize_batchnorm(DeepLabV2(num_classes=19, blocks=(1, 1, 1, 1)), seed=3).eval()
    model.class_names = CITYSCAPES_CLASSES
    model.pretrained_info = PretrainedInfo(source="test", protocol=UDA_PROTOCOL)
    return model


def street(seed: int, height: int = 1024, width: int = 2048) -> np.ndarray:
    """An ``(height, width, 3) uint8`` RGB image: smooth random colours, a road-like band, a
    disc and a box, and a little noise."""
    rng = np.random.default_rng(seed)
    coarse = (rng.random((9, 17, 3)) * 255).astype(np.uint8)
    image = np.array(Image.fromarray(coarse).resize((width, height), Image.BILINEAR), np.int16)
    yy, xx = np.mgrid[:height, :width]
    image[yy > 0.6 * height] = (128, 64, 128)
    image[(yy - 0.4 * height) ** 2 + (xx - 0.7 * width) ** 2 < (0.15 * height) ** 2] = (220, 20, 60)
    image[int(0.2 * height) : int(0.5 * height), int(0.1 * width) : int(0.3 * width)] = (0, 0, 142)
    image += rng.integers(-8, 9, image.shape, dtype=np.int16)
    return np.clip(image, 0, 255).astype(np.uint8)


#: (image (height, width), resize_to (width, height)): Cityscapes' and 4 times smaller
SIZES = [
    pytest.param((256, 512), (256, 128), id="small"),
    pytest.param((1024, 2048), (1024, 512), id="cityscapes", marks=pytest.mark.slow),
]


def their_labels(
    model: torch.nn.Module, rgb: np.ndarray, size: tuple[int, int] = (1024, 512)
) -> np.ndarray:
    """Their pipeline, step by step: ``(H, W, 3) uint8`` RGB -> ``(H, W)`` labels (``size``:
    their resizing, (width, height))."""
    image = Image.fromarray(rgb).convert("RGB").resize(size, Image.BICUBIC)
    bgr = np.asarray(image, np.float32)[:, :, ::-1] - THEIR_MEAN
    x = torch.from_numpy(np.ascontiguousarray(bgr.transpose(2, 0, 1)))[None]
    with torch.no_grad():
        logits = model(x)
        full = F.interpolate(logits, size=rgb.shape[:2], mode="bilinear", align_corners=True)
    return full[0].argmax(0).numpy()


def their_iou(pairs: list[tuple[np.ndarray, np.ndarray]], n: int) -> np.ndarray:
    """Per-class IoU of one confusion matrix over all ``(label, prediction)`` pairs (labels
    outside ``0..n-1`` not counted); NaN for a class neither labelled nor predicted."""
    hist = np.zeros((n, n))
    for label, prediction in pairs:
        keep = (label >= 0) & (label < n)
        pairs_index = n * label[keep].astype(int) + prediction[keep].astype(int)
        hist += np.bincount(pairs_index, minlength=n * n).reshape(n, n)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.diag(hist) / (hist.sum(1) + hist.sum(0) - np.diag(hist))


# -- the protocol -----------------------------------------------------------------------------


def test_the_protocol_round_trips_and_old_records_still_read() -> None:
    record = UDA_PROTOCOL.as_dict()
    assert record["resize_to"] == [1024, 512] and record["upsampling"] == "stretch"
    assert record["scales"] == [] and record["pad_to"] is None
    assert json.loads(json.dumps(record)) == record
    assert EvalProtocol.from_dict(record) == UDA_PROTOCOL
    for protocol in (RELEASE_PROTOCOL, PORT_PROTOCOL):  # their records are as before
        assert {"resize_to", "upsampling"}.isdisjoint(protocol.as_dict())
        assert EvalProtocol.from_dict(protocol.as_dict()) == protocol
    old = {"msc_mode": "pytorch", "scales": [0.5], "pad_to": None, "crf": "vgg16-voc"}
    loaded = EvalProtocol.from_dict(old)
    assert loaded.resize_to is None and loaded.upsampling == "zoom"
    with pytest.raises(ValueError, match="unknown test protocol keys \\['resize'\\]"):
        EvalProtocol.from_dict({**old, "resize": [1, 2]})


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"pad_to": 513}, "needs pad_to=None and upsampling='stretch'"),
        ({"upsampling": "zoom"}, "needs pad_to=None and upsampling='stretch'"),
        ({"resize_to": (1024, 0)}, "two positive integers"),
        ({"resize_to": (1024,)}, "two positive integers"),
        ({"resize_to": (1024.0, 512)}, "two positive integers"),
        ({"upsampling": "nearest"}, "upsampling must be one of"),
        ({"resize_to": None, "pad_to": 513}, "the logits of a padded input cover the padding"),
    ],
)
def test_inconsistent_protocols_are_refused(changes, message) -> None:
    with pytest.raises(ValueError, match=message):
        dataclasses.replace(UDA_PROTOCOL, **changes)


def test_scales_on_the_resized_input_are_a_protocol() -> None:
    msc = dataclasses.replace(UDA_PROTOCOL, scales=(0.5, 0.75))
    assert msc.resize_to == (1024, 512) and msc.scales == (0.5, 0.75)


# -- the Segmenter ----------------------------------------------------------------------------


def test_a_cityscapes_image_is_resized_not_tiled(uda_model) -> None:
    segmenter = Segmenter(uda_model)
    assert segmenter.protocol == UDA_PROTOCOL and segmenter.tile_size == 1025
    assert not segmenter.tiled(1024, 2048) and segmenter.input_size(1024, 2048) == (512, 1024)
    settings = segmenter.settings()
    assert settings["resize_to"] == [1024, 512] and settings["upsampling"] == "stretch"
    assert settings["scales"] == [1.0] and settings["pad_to"] is None


@pytest.mark.parametrize(("shape", "size"), SIZES)
def test_the_segmenter_follows_their_pipeline(uda_model, monkeypatch, shape, size) -> None:
    import deeplabv2.segmenter

    def no_tiles(*args, **kwargs):
        raise AssertionError("a resized image is not tiled")

    monkeypatch.setattr(deeplabv2.segmenter, "tiled_logits", no_tiles)
    segmenter = Segmenter(uda_model, resize_to=size)
    assert segmenter.protocol == dataclasses.replace(UDA_PROTOCOL, resize_to=size)
    image = street(0, *shape)
    ours = segmenter.predict(image).labels.numpy()
    theirs = their_labels(uda_model, image, size)
    assert ours.shape == theirs.shape == shape
    assert len(np.unique(theirs)) > 2  # the comparison means something
    assert (ours == theirs).mean() >= 0.999


def test_images_of_any_size_share_one_batch(uda_model) -> None:
    segmenter = Segmenter(uda_model, resize_to=(96, 64))
    images = [street(1, 100, 150), street(2, 130, 90), street(3, 40, 60)]  # 40 < min size
    one = [segmenter.probabilities(image) for image in images]
    batched = segmenter.probabilities_batch(images, batch_size=3)
    for image, a, b in zip(images, one, batched):
        assert a.shape == b.shape == (19, *image.shape[:2])
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)


def test_overrides_and_their_checks(uda_model) -> None:
    unresized = Segmenter(uda_model, resize_to=None)  # at its own size, stretched
    assert unresized.protocol == dataclasses.replace(UDA_PROTOCOL, resize_to=None)
    assert unresized.input_size(100, 150) == (100, 150) and unresized.tiled(100, 2000)
    labels = unresized.predict(street(4, 97, 129)).labels
    assert labels.shape == (97, 129)
    with pytest.raises(ValueError, match="larger than tile_size 1025: .* tile_size=2048"):
        Segmenter(uda_model, resize_to=(2048, 1024))
    assert Segmenter(uda_model, resize_to=(2048, 1024), tile_size=None).input_size(1, 1) == (
        1024,
        2048,
    )
    with pytest.raises(ValueError, match="too small: this network needs at least"):
        Segmenter(uda_model, resize_to=(64, 4))
    uda_model.pretrained_info = PretrainedInfo(protocol=RELEASE_PROTOCOL)
    try:  # the release's weights: resizing takes its other two settings with it
        with pytest.raises(ValueError, match="needs pad_to=None and upsampling='stretch'"):
            Segmenter(uda_model, resize_to=(1024, 512))
        seg = Segmenter(uda_model, resize_to=(96, 64), pad_to=None, upsampling="stretch")
        assert seg.protocol.scales == RELEASE_PROTOCOL.scales and seg.input_size(9, 9) == (64, 96)
    finally:
        uda_model.pretrained_info = PretrainedInfo(source="test", protocol=UDA_PROTOCOL)


def test_a_resized_input_has_one_shape_to_compile(uda_model) -> None:
    assert compiled(uda_model, False, PORT_PROTOCOL) is uda_model
    with pytest.raises(ValueError, match="compile needs fixed input shapes"):
        compiled(uda_model, True, PORT_PROTOCOL)
    assert compiled(uda_model, True, UDA_PROTOCOL) is not uda_model  # compiled lazily


# -- the command line -------------------------------------------------------------------------


def test_the_cli_options_override_the_resizing() -> None:
    def overrides(*extra: str) -> dict:
        return protocol_overrides(build_parser().parse_args(["predict", "x", "--out", "o", *extra]))

    assert overrides() == {}
    assert overrides("--resize", "1024x512", "--pad-to", "none", "--upsampling", "stretch") == {
        "resize_to": (1024, 512),
        "pad_to": None,
        "upsampling": "stretch",
    }
    assert overrides("--resize", "none") == {"resize_to": None}
    for bad in ("1024", "0x512", "1024x-5", "ax5"):
        with pytest.raises(SystemExit):
            overrides("--resize", bad)


@pytest.fixture
def weights_file(uda_model, tmp_path: Path, monkeypatch) -> Path:
    """The model saved with its protocol in the header; ``load_model`` builds the tiny network
    (the builders make full-size ones) and reads the file's weights and protocol."""
    from safetensors import safe_open
    from safetensors.torch import load_file

    path = save_weights(uda_model, tmp_path / "uda.safetensors")

    def load_model(weights, model=None, dialect=None):
        net = DeepLabV2(num_classes=19, blocks=(1, 1, 1, 1))
        net.load_state_dict(load_file(str(weights)))
        with safe_open(str(weights), framework="pt") as handle:
            recorded = json.loads(handle.metadata()["protocol"])
        net.pretrained_info = PretrainedInfo(protocol=EvalProtocol.from_dict(recorded))
        return net.eval()

    monkeypatch.setattr("deeplabv2.models.load_model", load_model)
    return Path(path)


@pytest.mark.parametrize(("shape", "size"), SIZES)
def test_predict_follows_the_protocol_in_the_weights_file(
    weights_file: Path, uda_model, tmp_path: Path, shape, size
) -> None:
    image = street(5, *shape)
    Image.fromarray(image).save(tmp_path / "x_leftImg8bit.png")
    out = tmp_path / "out"
    argv = ["predict", str(tmp_path / "x_leftImg8bit.png"), "--out", str(out), "--quiet",
            "--weights", str(weights_file)]  # fmt: skip
    resize = [] if size == (1024, 512) else ["--resize", "{}x{}".format(*size)]
    assert main([*argv, *resize, "--device", "cpu"]) == 0
    ours = np.array(Image.open(out / "x_leftImg8bit.png"))
    theirs = their_labels(uda_model, image, size)
    assert ours.shape == shape and (ours == theirs).mean() >= 0.999
    segmenter = build_segmenter(build_parser().parse_args([*argv, *resize]), torch.device("cpu"))
    assert segmenter.protocol == dataclasses.replace(UDA_PROTOCOL, resize_to=size)


# -- the scores -------------------------------------------------------------------------------


def write_cityscapes(root: Path, images: list[np.ndarray], labels: list[np.ndarray]) -> None:
    """``leftImg8bit/val/city/`` images and ``gtFine/val/city/`` label ids."""
    (root / "leftImg8bit/val/city").mkdir(parents=True)
    (root / "gtFine/val/city").mkdir(parents=True)
    for index, (image, label) in enumerate(zip(images, labels)):
        Image.fromarray(image).save(root / f"leftImg8bit/val/city/x{index}_leftImg8bit.png")
        Image.fromarray(label).save(root / f"gtFine/val/city/x{index}_gtFine_labelIds.png")


def test_evaluate_scores_as_their_compute_iou(uda_model, tmp_path: Path) -> None:
    images = [street(6, 256, 512), street(7, 256, 512)]
    size = (256, 128)  # the network's work 4 times smaller than at 1024x512
    predictions = [their_labels(uda_model, image, size) for image in images]
    labels = []
    for prediction in predictions:  # road, sidewalk and car ids; unlabeled (0) is ignored
        label = np.full(prediction.shape, 7, np.uint8)
        label[:, : prediction.shape[1] // 3] = 8
        label[prediction.shape[0] // 2 :, -100:] = 26
        label[:10] = 0
        labels.append(label)
    write_cityscapes(tmp_path / "cityscapes", images, labels)
    dataset = Cityscapes(tmp_path / "cityscapes", "val")
    results = evaluate(Segmenter(uda_model, resize_to=size), dataset, progress=False)
    train_ids = [dataset[i][1] for i in range(len(dataset))]
    iou = their_iou(list(zip(train_ids, predictions)), 19)
    labelled = {0, 1, 13}
    predicted_only = set(np.unique(np.concatenate([p.ravel() for p in predictions]))) - labelled
    assert predicted_only, "the case of a class predicted but absent from the labels"
    ours = results["per_class_iou"]
    for index, name in enumerate(CITYSCAPES_CLASSES):
        if np.isnan(iou[index]):
            assert ours[name] is None, name  # neither labelled nor predicted: left out
        else:
            assert ours[name] == pytest.approx(iou[index], abs=1e-4), name
    for index in predicted_only:
        assert ours[CITYSCAPES_CLASSES[index]] == 0.0  # counts 0 in the mean
    assert results["mean_iou"] == pytest.approx(np.nanmean(iou), abs=1e-4)
    assert results["settings"]["resize_to"] == [256, 128]


# -- ONNX export ------------------------------------------------------------------------------


def test_export_states_the_resizing_it_cannot_hold(uda_model, tmp_path: Path) -> None:
    from deeplabv2 import export

    metadata = export.onnx_metadata(uda_model, None, False)
    pre = json.loads(metadata["deeplabv2.preprocessing"])
    assert pre["resize_to"] == [1024, 512] and "BICUBIC" in pre["resize"]
    assert pre["subtract_mean_bgr"] == [104.00698793, 116.66876762, 122.67891434]
    assert json.loads(metadata["deeplabv2.protocol"])["upsampling"] == "stretch"
    with pytest.raises(ValueError, match="export the logits"):  # before anything is written
        export.export_onnx(uda_model, tmp_path / "m.onnx", probabilities=True)
    assert not (tmp_path / "m.onnx").exists()
    graph = export._Graph(uda_model, True, "stretch").eval()
    x = torch.randn(1, 3, 65, 97)
    with torch.no_grad():
        expected = F.interpolate(uda_model(x), size=(65, 97), mode="bilinear", align_corners=True)
        torch.testing.assert_close(graph(x), expected.softmax(1))


@pytest.mark.slow
def test_export_onnx_stretches_with_dynamic_sizes(uda_model, tmp_path: Path) -> None:
    """At its own size (``resize_to=None``) the protocol's probabilities fit in the graph: the
    logits stretched to the input's size, for any size."""
    import copy

    onnx = pytest.importorskip("onnx", reason="needs the export extra")
    from deeplabv2 import export

    model = copy.deepcopy(uda_model)
    protocol = dataclasses.replace(UDA_PROTOCOL, resize_to=None)
    model.pretrained_info = PretrainedInfo(protocol=protocol)
    report = export.export_onnx(model, tmp_path / "uda.onnx", probabilities=True)
    assert len(report.errors) == 2 and report.max_relative_error < 1e-4  # two input sizes
    props = {p.key: p.value for p in onnx.load(str(tmp_path / "uda.onnx")).metadata_props}
    assert "resize_to" not in json.loads(props["deeplabv2.preprocessing"])
    assert "stretched to (H, W)" in props["deeplabv2.output"]
