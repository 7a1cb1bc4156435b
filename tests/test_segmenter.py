"""Segmenter: input kinds, the release's protocol, tiling, MSC + flip + CRF end to end."""

from __future__ import annotations

import dataclasses
import subprocess
import sys
import warnings

import numpy as np
import pytest
import torch
from PIL import Image
from skimage import data as skdata
from torch import nn

from deeplabv2 import MultiScale, tiling
from deeplabv2.crf import DenseCRF
from deeplabv2.data import to_caffe_input
from deeplabv2.errors import ImageSizeError
from deeplabv2.interp import upsample_logits
from deeplabv2.protocol import PORT_PROTOCOL, RELEASE_PROTOCOL, PretrainedInfo
from deeplabv2.segmenter import Segmenter
from deeplabv2.tiling import tile_layout, tile_overlap_for


class SmallFieldNet(nn.Module):
    """Output stride 8 (ceil(n / 8) outputs) with a receptive field of 19 pixels."""

    def __init__(self, num_classes: int = 4) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.num_classes = num_classes
        self.down = nn.Conv2d(3, 8, 3, stride=8, padding=1)
        self.head = nn.Conv2d(8, num_classes, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(torch.relu(self.down(x / 50)))


@pytest.fixture(scope="module")
def photo() -> np.ndarray:
    return np.ascontiguousarray(skdata.coffee()[100:165, 200:265])  # 65x65


def test_unpadded_mode_matches_the_parts(tiny_deeplab, photo: np.ndarray) -> None:
    seg = Segmenter(tiny_deeplab, scales=(0.5, 0.75), pad_to=None)
    pred = seg.predict(photo, return_probs=True)
    with torch.no_grad():
        logits = MultiScale(tiny_deeplab, (0.5, 0.75)).eval()(to_caffe_input(photo)[None])
        probs = upsample_logits(logits, (65, 65)).softmax(1)[0]
    torch.testing.assert_close(pred.probs, probs)
    assert pred.labels.shape == (65, 65) and pred.labels.dtype == torch.int64
    assert torch.equal(pred.labels, probs.argmax(0))


def release_protocol(model, image: np.ndarray, scales=(0.5, 0.75)) -> torch.Tensor:
    """The release's test protocol written out: zero-pad the mean-subtracted input to 513 at
    the bottom/right, network + MSC, zoom the logits by 8 with corners aligned, crop."""
    h, w = image.shape[:2]
    x = torch.from_numpy(image).permute(2, 0, 1).float().flip(0)  # BGR
    x = x - torch.tensor([104.008, 116.669, 122.675]).view(3, 1, 1)
    x = torch.nn.functional.pad(x, (0, 513 - w, 0, 513 - h))[None]
    with torch.no_grad():
        logits = MultiScale(model, scales).eval()(x)
    assert logits.shape[-2:] == (65, 65)
    zoomed = torch.nn.functional.interpolate(
        logits, size=(513, 513), mode="bilinear", align_corners=True
    )
    return zoomed[0, :, :h, :w].softmax(0)


@pytest.fixture(scope="module")
def voc_photos() -> list[np.ndarray]:
    """Real photos of several sizes up to 500 (not all 8k + 1)."""
    return [
        np.ascontiguousarray(skdata.astronaut()[:375, :500]),
        np.ascontiguousarray(skdata.coffee()[:333, :481]),  # 8k+1 wide, not high
        np.ascontiguousarray(skdata.chelsea()[:300, :451]),
        np.ascontiguousarray(skdata.rocket()[:427, :320]),
    ]


def test_release_protocol_is_the_default(tiny_deeplab, voc_photos) -> None:
    seg = Segmenter(tiny_deeplab)  # no weights protocol: the release's
    assert seg.pad_to == 513 and seg.net.scales == (1.0, 0.75, 0.5) and seg.net.mode == "caffe"
    for image in voc_photos:
        pred = seg.predict(image, return_probs=True)
        expected = release_protocol(tiny_deeplab, image)
        torch.testing.assert_close(pred.probs, expected, atol=1e-5, rtol=1e-4)
        assert (pred.labels == expected.argmax(0)).float().mean() > 0.9999
    unpadded = Segmenter(tiny_deeplab, pad_to=None).predict(voc_photos[0], return_probs=True)
    assert not torch.allclose(unpadded.probs, release_protocol(tiny_deeplab, voc_photos[0]))


def test_larger_images_pad_to_the_next_8k_plus_1(tiny_deeplab) -> None:
    seg = Segmenter(tiny_deeplab, scales=())
    assert seg.input_size(375, 500) == (513, 513)
    assert seg.input_size(600, 514) == (601, 521) and seg.input_size(601, 513) == (601, 513)
    photo = skdata.astronaut()  # 512x512: two more columns make it wider than 513
    image = np.ascontiguousarray(np.concatenate([photo, photo[:, :2]], axis=1))
    with torch.no_grad():
        x = torch.nn.functional.pad(to_caffe_input(image), (0, 521 - 514, 0, 513 - 512))[None]
        zoomed = torch.nn.functional.interpolate(
            tiny_deeplab(x), size=(513, 521), mode="bilinear", align_corners=True
        )
    expected = zoomed[0, :, :512, :514].softmax(0)
    torch.testing.assert_close(seg.predict(image, True).probs, expected, atol=1e-5, rtol=1e-4)


def test_the_weights_protocol_is_followed(tiny_deeplab, photo) -> None:
    tiny_deeplab.pretrained_info = PretrainedInfo(protocol=PORT_PROTOCOL)
    try:
        seg = Segmenter(tiny_deeplab)
        assert seg.net.mode == "pytorch" and seg.pad_to is None
        assert Segmenter(tiny_deeplab, pad_to=513, msc_mode="caffe").net.mode == "caffe"
        vgg = dataclasses.replace(RELEASE_PROTOCOL, crf="vgg16-voc")
        tiny_deeplab.pretrained_info = PretrainedInfo(protocol=vgg)
        assert Segmenter(tiny_deeplab, crf=True).crf.params.bi_xy_std == 65  # the VGG preset
    finally:
        tiny_deeplab.pretrained_info = None


def test_batches_equal_one_at_a_time(tiny_deeplab, voc_photos) -> None:
    seg = Segmenter(tiny_deeplab, scales=(0.5, 0.75))
    images = voc_photos[:2] + [voc_photos[0][:99, :77]]
    one = seg.probabilities_batch(images, batch_size=1)
    four = seg.probabilities_batch(images, batch_size=4)
    for a, b in zip(one, four):
        assert a.shape == b.shape
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-4)
        assert (a.argmax(0) == b.argmax(0)).float().mean() >= 0.9999
    unpadded = Segmenter(tiny_deeplab, scales=(), pad_to=None)  # equal sizes batch together
    same = [voc_photos[0], voc_photos[0][:, ::-1].copy(), voc_photos[1]]
    for a, b in zip(unpadded.probabilities_batch(same, 1), unpadded.probabilities_batch(same, 2)):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-4)


def test_input_kinds_agree(tmp_path, tiny_deeplab, photo: np.ndarray) -> None:
    seg = Segmenter(tiny_deeplab, scales=())
    Image.fromarray(photo).save(tmp_path / "p.png")
    reference = seg.predict(photo).labels
    for image in (
        tmp_path / "p.png",
        str(tmp_path / "p.png"),
        Image.fromarray(photo),
        torch.from_numpy(photo).permute(2, 0, 1),
        torch.from_numpy(photo).permute(2, 0, 1).float() / 255,
    ):
        assert torch.equal(seg.predict(image).labels, reference)
    gray = seg.predict(Image.fromarray(photo).convert("L"))
    assert gray.labels.shape == (65, 65)
    batch = seg.predict_batch([photo, photo[:33, :49]])
    assert [p.labels.shape for p in batch] == [(65, 65), (33, 49)]
    assert pred_is_none(batch[0].probs)


def pred_is_none(value) -> bool:
    return value is None


def test_tiling_equals_whole_image_for_a_small_receptive_field() -> None:
    image = np.ascontiguousarray(skdata.astronaut()[:150, :131])
    model = SmallFieldNet()
    whole = Segmenter(model, scales=(), tile_size=None).predict(image, return_probs=True)
    with pytest.warns(UserWarning, match="far below the padding"):  # each tile padded to 513
        tiled_seg = Segmenter(model, scales=(), tile_size=64, tile_overlap=32)
    assert len(tile_layout(150, 64, 32)) > 2  # really tiled, in both directions
    tiled = tiled_seg.predict(image, return_probs=True)
    torch.testing.assert_close(tiled.probs, whole.probs, atol=1e-6, rtol=1e-5)
    assert torch.equal(tiled.labels, whole.labels)


def test_tiles_cover_the_axis_once() -> None:
    for length in (100, 129, 1000, 1031):
        tiles = tile_layout(length, 257, 64)
        kept = np.zeros(length, int)
        for start, end, keep0, keep1 in tiles:
            assert start % 8 == 0 and end - start <= 257 and start <= keep0 < keep1 <= end
            kept[keep0:keep1] += 1
        assert (kept == 1).all()


def test_msc_flip_crf_end_to_end(tiny_deeplab, photo: np.ndarray) -> None:
    seg = Segmenter(tiny_deeplab, scales=(0.5, 0.75), flip=True, crf=True)
    assert isinstance(seg.crf, DenseCRF)
    pred = seg.predict(photo, return_probs=True)
    no_crf = Segmenter(tiny_deeplab, scales=(0.5, 0.75), flip=True).predict(
        photo, return_probs=True
    )
    expected = DenseCRF()(torch.from_numpy(photo).permute(2, 0, 1), no_crf.probs)
    torch.testing.assert_close(pred.probs, expected)


def test_bfloat16_autocast_on_cpu(tiny_deeplab, photo: np.ndarray) -> None:
    pred = Segmenter(tiny_deeplab, scales=(), dtype=torch.bfloat16).predict(photo, True)
    assert pred.probs.dtype == torch.float32
    full = Segmenter(tiny_deeplab, scales=()).predict(photo, True)
    difference = (pred.probs - full.probs).abs().max().item()
    assert 0 < difference < 0.02  # bfloat16 really ran, to bfloat16 precision (8-bit mantissa)
    top2 = full.probs.topk(2, dim=0).values
    margin = top2[0] - top2[1]
    changed = pred.labels != full.labels
    assert (margin[changed] < 0.02).all()  # labels change only where float32 nearly ties


def test_bad_settings(tiny_deeplab) -> None:
    with pytest.raises(ValueError, match="float16 autocast needs a CUDA device"):
        Segmenter(tiny_deeplab, dtype=torch.float16, device="cpu")
    with pytest.raises(ValueError, match="dtype must be"):
        Segmenter(tiny_deeplab, dtype=torch.int8)
    with pytest.raises(ValueError, match="tile_overlap"):
        Segmenter(tiny_deeplab, tile_size=100, tile_overlap=60)


def test_overlaps_rounded_up_to_the_stride_still_advance() -> None:
    """tile_size=20, tile_overlap=10: the overlap rounds up to 16, the tiles still move on."""
    assert tile_overlap_for(20, 10) == 16
    for length in (21, 100, 131):
        kept = np.zeros(length, int)
        for start, end, keep0, keep1 in tile_layout(length, 20, 16):
            assert start % 8 == 0 and end - start <= 20 and start <= keep0 < keep1 <= end
            kept[keep0:keep1] += 1
        assert (kept == 1).all()
    image = np.ascontiguousarray(skdata.astronaut()[:60, :45])
    seg = Segmenter(SmallFieldNet(), scales=(), pad_to=None, tile_size=20, tile_overlap=10)
    assert seg.predict(image).labels.shape == (60, 45)


def test_tiled_probabilities_are_those_of_the_tiled_logits() -> None:
    image = np.ascontiguousarray(skdata.astronaut()[:150, :131])
    seg = Segmenter(SmallFieldNet(), scales=(), pad_to=None, tile_size=64, tile_overlap=32)
    logits = tiling.tiled_logits(image, lambda t: seg._logits_batch([t])[0], 64, 32)
    probs = seg.probabilities(image)
    torch.testing.assert_close(probs, logits.softmax(0), atol=1e-7, rtol=1e-6)


MEMORY_SCRIPT = """
import re, numpy as np, torch
from torch import nn
from deeplabv2.segmenter import Segmenter

class Net(nn.Module):  # output stride 8, 8 classes, next to no memory of its own
    num_classes = 8
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 1, stride=8)
    def forward(self, x):
        return self.conv(x)

def rss(field):
    status = open("/proc/self/status").read()
    return int(re.search(field + r":\\s+(\\d+) kB", status).group(1)) * 1024

torch.set_num_threads(1)
seg = Segmenter(Net(), scales=(), pad_to=None, tile_size=513, max_pixels=None)
seg.probabilities(np.ones((600, 600, 3), np.uint8))  # warm up
image = np.ones((3000, 3000, 3), np.uint8)
base = rss("VmRSS")
open("/proc/self/clear_refs", "w").write("5")  # reset the peak
probs = seg.probabilities(image)
print((rss("VmHWM") - base) / probs.nelement() / 4)
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc/self")
def test_a_tiled_image_needs_one_full_size_copy() -> None:
    """The probabilities of a tiled image are computed tile by tile into one buffer: its peak
    memory is one full-resolution float32 copy plus a tile's, not two full copies."""
    done = subprocess.run(
        [sys.executable, "-c", MEMORY_SCRIPT], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    copies = float(done.stdout.strip().splitlines()[-1])
    assert copies < 1.5, f"peak memory of {copies:.2f} full-size copies"


def test_a_full_size_buffer_that_does_not_fit_says_so(monkeypatch) -> None:
    def refuse(*args, **kwargs):
        raise RuntimeError(
            "DefaultCPUAllocator: can't allocate memory: you tried to allocate 8400000000 bytes."
        )

    monkeypatch.setattr(tiling, "_full_size_buffer", refuse)
    image = np.zeros((150, 131, 3), np.uint8)
    seg = Segmenter(SmallFieldNet(), scales=(), pad_to=None, tile_size=64)
    with pytest.raises(ImageSizeError) as caught:
        seg.probabilities(image)
    assert isinstance(caught.value, MemoryError)
    message = str(caught.value)
    assert "131x150" in message and "full-size" in message and "does not help" in message


def test_tile_sizes_far_below_the_padding_warn() -> None:
    with pytest.warns(UserWarning, match=r"tile_size=100 .* about \d+ times"):
        Segmenter(SmallFieldNet(), scales=(), tile_size=100)  # each tile padded to 513
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        Segmenter(SmallFieldNet(), scales=())  # 1025
        Segmenter(SmallFieldNet(), scales=(), tile_size=513)  # about twice the default's work
        Segmenter(SmallFieldNet(), scales=(), tile_size=100, pad_to=None)  # tiles unpadded


@pytest.mark.parametrize("resize_to", [None, (72, 40)])
def test_a_read_only_array_predicts_without_a_warning(resize_to) -> None:
    """``np.asarray(pil_image)`` is read-only; torch warns when it wraps one."""
    torch.manual_seed(0)
    from deeplabv2.models import DeepLabV2

    model = DeepLabV2(num_classes=3, blocks=(1, 1, 1, 1)).eval()
    image = np.asarray(Image.fromarray(skdata.astronaut()[:65, :81]))
    assert not image.flags.writeable
    segmenter = Segmenter(model, pad_to=None, resize_to=resize_to, upsampling="stretch")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        frozen = segmenter.predict(image).labels
    assert torch.equal(frozen, segmenter.predict(image.copy()).labels)  # the same labels
