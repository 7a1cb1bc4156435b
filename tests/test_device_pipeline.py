"""The device-resident pipeline: labels scored where they are, one host copy per batch, the
stage profile, and the network compiled for fixed shapes."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from deeplabv2.crf import DenseCRF
from deeplabv2.evaluate import evaluate
from deeplabv2.metrics import ConfusionMatrix
from deeplabv2.pipeline import stream
from deeplabv2.profiling import Profile
from deeplabv2.segmenter import Segmenter

from .test_segmenter import SmallFieldNet

SIZES = [(40, 50), (65, 33), (20, 65), (57, 57), (33, 41)]


class Pairs:
    """A tiny dataset of random images and labels of different sizes, with a few label
    values outside the 4 classes and some 255s."""

    class_names = ("a", "b", "c", "d")

    def __init__(self, bad: int = 9) -> None:
        rng = np.random.default_rng(0)
        self.items = []
        for i, (h, w) in enumerate(SIZES):
            image = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
            label = rng.integers(0, 4, (h, w)).astype(np.uint8)
            label[:3] = 255
            label[3, :2] = bad
            self.items.append((image, label, f"im{i}"))

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int):
        return self.items[index]


def segmenter(**kw) -> Segmenter:
    return Segmenter(SmallFieldNet(), scales=(), pad_to=65, **kw)


def test_scores_on_the_device_equal_scoring_each_prediction_on_the_host() -> None:
    data, seg = Pairs(), segmenter()
    with pytest.warns(UserWarning, match="outside 0..3"):
        scores = evaluate(seg, data, batch_size=2, progress=False)
    reference = ConfusionMatrix(4)  # the immediate, host-side count of every prediction
    for image, label, _ in data.items:
        reference.update(seg.predict(image).labels.numpy(), label.astype(np.int64))
    expected = reference.scores(Pairs.class_names)
    assert scores["per_class_iou"] == expected["per_class_iou"]
    assert scores["num_pixels"] == expected["num_pixels"]
    assert scores["invalid_label_pixels"] == {"9": 2 * len(SIZES)}


def test_the_crf_inline_on_the_batch_and_in_a_worker_score_as_one_image_at_a_time() -> None:
    data, crf = Pairs(bad=1), DenseCRF(iterations=3, backend="torch")
    inline = evaluate(segmenter(crf=crf), data, batch_size=3, progress=False)
    pooled = evaluate(segmenter(crf=crf), data, batch_size=3, crf_workers=1, progress=False)
    reference, seg = ConfusionMatrix(4), segmenter()
    for image, label, _ in data.items:  # each image's CRF on its own, scored on the host
        refined = crf(torch.from_numpy(image).permute(2, 0, 1), seg.probabilities(image))
        reference.update(refined.argmax(0).numpy(), label.astype(np.int64))
    expected = reference.scores(Pairs.class_names)
    assert inline["per_class_iou"] == pooled["per_class_iou"] == expected["per_class_iou"]
    assert inline["num_pixels"] == expected["num_pixels"] > 0


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_cuda_pipeline_scores_as_the_cpu_one() -> None:
    data, crf = Pairs(bad=1), DenseCRF(iterations=3, backend="torch")
    cpu = evaluate(segmenter(crf=crf), data, batch_size=3, progress=False)
    gpu = evaluate(segmenter(crf=crf, device="cuda"), data, batch_size=3, workers=1, progress=False)
    assert gpu["num_pixels"] == cpu["num_pixels"]
    for name, iou in cpu["per_class_iou"].items():  # float32 sums differ a little on a GPU
        assert gpu["per_class_iou"][name] == pytest.approx(iou, abs=2e-3), name


def test_a_strict_label_error_names_its_image_from_the_device_counts() -> None:
    data = Pairs()
    data.items = [(im, np.where(lab == 9, 1, lab), n) for im, lab, n in data.items]
    data.items[3][1][10, 10] = 7
    with pytest.raises(Exception, match=r"^im3: 1 label pixels hold values outside 0\.\.3"):
        evaluate(segmenter(), data, batch_size=2, progress=False, strict_labels=True)


def test_on_device_streams_give_the_labels_the_host_stream_gives() -> None:
    data, seg = Pairs(), segmenter()

    def load(i: int):
        return data.items[i][0], None

    host = {r.index: r for r in stream(seg, load, range(len(SIZES)), batch_size=3)}
    device = {
        r.index: r for r in stream(seg, load, range(len(SIZES)), batch_size=3, on_device=True)
    }
    for i, result in device.items():
        assert result.prediction is None and result.labels is not None
        assert result.labels.dtype == torch.uint8  # what comes back to the host, if anything
        assert torch.equal(result.labels.long(), host[i].prediction.labels)
        assert host[i].prediction.labels.dtype == torch.int64  # Prediction's documented dtype


def test_the_host_stream_copies_labels_back_once_per_batch(monkeypatch) -> None:
    seg, rng = segmenter(), np.random.default_rng(1)
    images = [rng.integers(0, 256, (h, w, 3), dtype=np.uint8) for h, w in SIZES]
    copies = []
    original = torch.Tensor.cpu

    def counting(tensor, *args, **kwargs):
        if tensor.dtype == torch.uint8:
            copies.append(tuple(tensor.shape))
        return original(tensor, *args, **kwargs)

    monkeypatch.setattr(torch.Tensor, "cpu", counting)
    results = list(stream(seg, lambda i: (images[i], None), range(5), batch_size=2))
    assert len(results) == 5
    assert len(copies) == 3  # batches of 2, 2 and 1: one copy of the label maps each
    assert sum(n for (n,) in copies) == sum(h * w for h, w in SIZES)


def test_the_profile_counts_every_stage_and_bounds_the_run() -> None:
    profile = Profile("cpu")
    data = Pairs(bad=1)
    evaluate(segmenter(), data, batch_size=2, progress=False, profile=profile)
    ms = profile.per_image()
    assert profile.images == len(SIZES)
    for name in ("decode", "copy to device", "preprocessing", "network", "argmax", "scoring"):
        assert ms[name] > 0, name
    assert "CRF" not in ms and "copy to host" not in ms  # no CRF; scored on the device
    resources = profile.resources(workers=2, crf_workers=0, writers=0)
    assert resources["decode (2 processes)"] == pytest.approx(ms["decode"] / 2)
    busy = sum(v for k, v in ms.items() if k not in ("decode", "waiting for images"))
    assert resources["main thread + device"] == pytest.approx(busy)
    assert profile.bound(workers=2) == max(resources.values())
    assert profile.bound(workers=0) == pytest.approx(busy + ms["decode"])


def test_compile_needs_fixed_shapes() -> None:
    with pytest.raises(ValueError, match="compile needs fixed input shapes"):
        Segmenter(SmallFieldNet(), scales=(), pad_to=None, compile=True)


def test_a_compiled_network_always_sees_the_batch_shape(monkeypatch) -> None:
    shapes = []

    def fake_compile(module, **options):
        assert options == {"dynamic": False, "mode": "reduce-overhead"}
        return lambda x: shapes.append(tuple(x.shape)) or module(x)

    monkeypatch.setattr(torch, "compile", fake_compile)
    seg = segmenter(compile="reduce-overhead")
    rng = np.random.default_rng(2)
    images = [rng.integers(0, 256, (h, w, 3), dtype=np.uint8) for h, w in SIZES]
    probs = seg.probabilities_batch(images, batch_size=3)
    assert shapes == [(3, 3, 65, 65), (3, 3, 65, 65)]  # the last batch of 2 padded to 3
    eager = segmenter().probabilities_batch(images, batch_size=3)
    for a, b in zip(probs, eager):
        torch.testing.assert_close(a, b)
    assert seg.settings()["compile"] == "reduce-overhead"


@pytest.mark.slow
def test_compiled_network_matches_eager() -> None:
    rng = np.random.default_rng(3)
    images = [rng.integers(0, 256, (h, w, 3), dtype=np.uint8) for h, w in SIZES[:3]]
    compiled = segmenter(compile=True).probabilities_batch(images, batch_size=2)
    eager = segmenter().probabilities_batch(images, batch_size=2)
    for a, b in zip(compiled, eager):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-4)
