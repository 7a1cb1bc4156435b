"""One default at every door: the Segmenter, the CLI's predict/eval, ONNX export and the demo all
start from the weights' own protocol and change only what the user overrode."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from deeplabv2 import Segmenter
from deeplabv2.cli.main import build_parser
from deeplabv2.cli.options import build_segmenter
from deeplabv2.models import deeplab_v2_resnet101
from deeplabv2.protocol import PORT_PROTOCOL, RELEASE_PROTOCOL, PretrainedInfo, protocol_of


def cli_segmenter(weights, *extra: str) -> Segmenter:
    args = build_parser().parse_args(
        ["predict", "x.png", "--out", "o", "--weights", weights, *extra]
    )
    return build_segmenter(args, torch.device("cpu"))


def test_the_cli_runs_the_weights_protocol_unless_told(voc_safetensors):
    weights = str(voc_safetensors)  # a converted release file: the release's protocol
    model = deeplab_v2_resnet101(pretrained=weights)
    assert protocol_of(model) == RELEASE_PROTOCOL
    library = Segmenter(model)
    cli = cli_segmenter(weights)
    assert cli.protocol == library.protocol == RELEASE_PROTOCOL  # MSC, 513 padding
    assert cli.net.scales == library.net.scales == (1.0, 0.75, 0.5)
    assert cli_segmenter(weights, "--single-scale").protocol == dataclasses.replace(
        RELEASE_PROTOCOL, scales=()
    )
    unpadded = cli_segmenter(weights, "--pad-to", "none", "--msc-mode", "pytorch").protocol
    assert unpadded == dataclasses.replace(RELEASE_PROTOCOL, pad_to=None, msc_mode="pytorch")
    assert cli.crf is None and cli_segmenter(weights, "--crf").crf.params.bi_xy_std == 67
    with pytest.raises(SystemExit):  # one or the other
        cli_segmenter(weights, "--single-scale", "--msc")


def test_the_segmenter_replaces_only_what_is_overridden(tiny_deeplab):
    tiny_deeplab.pretrained_info = PretrainedInfo(protocol=PORT_PROTOCOL)
    try:
        assert Segmenter(tiny_deeplab).protocol == PORT_PROTOCOL
        seg = Segmenter(tiny_deeplab, scales=(), crf="vgg16-voc", crf_backend="torch")
        assert seg.protocol == dataclasses.replace(PORT_PROTOCOL, scales=(), crf="vgg16-voc")
        assert seg.crf.backend == "torch" and seg.crf.params.bi_xy_std == 65
        with pytest.raises(TypeError, match="unexpected arguments scale; the protocol's"):
            Segmenter(tiny_deeplab, scale=())
    finally:
        tiny_deeplab.pretrained_info = None


def test_export_and_the_demo_follow_the_protocol_too(tiny_deeplab):
    pytest.importorskip("onnx", reason="needs the export extra")
    from deeplabv2 import demo, export

    assert export._scales(tiny_deeplab, None) == RELEASE_PROTOCOL.scales  # the default
    assert export._scales(tiny_deeplab, False) is None
    photo = np.zeros((40, 48, 3), np.uint8)
    by_default = demo.segment(tiny_deeplab, photo, msc=True, crf=False, device="cpu")
    expected = Segmenter(tiny_deeplab).predict(photo).labels.numpy()
    np.testing.assert_array_equal(by_default["labels"], expected)
