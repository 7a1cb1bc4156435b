"""The network, multi-scale inference and the Segmenter on a CUDA GPU give the CPU's results."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from skimage import data as skdata

from deeplabv2 import Segmenter

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


@pytest.fixture(autouse=True)
def float32_on_the_gpu():
    """PyTorch's default TF32 convolutions (Ampere and later) round to 10 mantissa bits, which
    moves logits by about 1e-3 relative; the comparison with the CPU is in true float32."""
    saved = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
    yield
    torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = saved


def test_cuda_forward_matches_cpu(tiny_deeplab) -> None:
    x = torch.randn(2, 3, 65, 65, generator=torch.Generator().manual_seed(0))
    cpu = tiny_deeplab(x)
    gpu = copy.deepcopy(tiny_deeplab).cuda()(x.cuda())
    assert gpu.device.type == "cuda" and gpu.shape == cpu.shape
    scale = cpu.abs().max()
    torch.testing.assert_close(gpu.cpu() / scale, cpu / scale, atol=1e-4, rtol=0)


def test_cuda_segmenter_with_msc_and_crf_matches_cpu(tiny_deeplab) -> None:
    image = np.ascontiguousarray(skdata.astronaut()[:97, :121])
    settings = {"scales": (0.5, 0.75), "crf": True, "pad_to": None}
    cpu = Segmenter(copy.deepcopy(tiny_deeplab), device="cpu", **settings)
    gpu = Segmenter(copy.deepcopy(tiny_deeplab), device="cuda", **settings)
    a = cpu.predict(image, return_probs=True)
    b = gpu.predict(image, return_probs=True)
    assert b.labels.device.type == "cpu" and b.labels.shape == image.shape[:2]
    assert float((a.probs - b.probs).abs().max()) <= 1e-3
    assert float((a.labels == b.labels).float().mean()) >= 0.999
