"""The torch backend on CUDA: the reference's results (pydensecrf where installed, else the CPU
backends, which test_parity holds to pydensecrf) for batches of different photographs."""

from __future__ import annotations

import pytest
import torch

from deeplabv2.crf import PRESETS, Backend, DenseCRF, PermutohedralLattice, get_backend
from deeplabv2.crf.lattice import cuda_spmm
from deeplabv2.crf.lattice.sparse import csr_tensor

from .photos import as_torch, four_photos, ragged_photos

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


def reference(images: torch.Tensor, probs: torch.Tensor, preset: str) -> torch.Tensor:
    backend = "pydensecrf" if get_backend("pydensecrf").available() else "torch"
    return DenseCRF.from_preset(preset, backend=backend)(images, probs)


@pytest.mark.parametrize("preset", sorted(PRESETS))
@pytest.mark.parametrize("batch", [1, 4])
def test_cuda_matches_the_reference(batch: int, preset: str) -> None:
    images, probs = four_photos()
    images, probs = images[:batch], probs[:batch]
    refined = DenseCRF.from_preset(preset)(images.cuda(), probs.cuda())
    assert refined.device.type == "cuda" and refined.shape == probs.shape
    expected = reference(images, probs, preset)
    assert float((refined.cpu() - expected).abs().max()) <= 1e-4
    agreement = (refined.cpu().argmax(1) == expected.argmax(1)).float().mean()
    assert float(agreement) >= 0.9999


def test_cuda_ragged_batch_matches_one_image_at_a_time() -> None:
    images, probs = as_torch(*ragged_photos(21))
    crf = DenseCRF(backend="torch")
    refined = crf([im.cuda() for im in images], [p.cuda() for p in probs])  # one lattice
    for image, prob, q in zip(images, probs, refined):
        assert q.device.type == "cuda" and q.shape == prob.shape
        alone = crf(image.cuda(), prob.cuda())
        assert float((q - alone).abs().max()) < 1e-5
        expected = reference(image[None], prob[None], "resnet101-voc")[0]
        assert float((q.cpu() - expected).abs().max()) <= 1e-4


def test_cuda_ragged_default_is_one_lattice() -> None:
    calls: list[str] = []

    def one(image: torch.Tensor, prob: torch.Tensor, params) -> torch.Tensor:
        calls.append("one")
        return prob

    def ragged(images: list, probs: list, params) -> list:
        calls.append("ragged")
        return list(probs)

    images, probs = as_torch(*ragged_photos())
    gpu = Backend(name="gpu", mean_field=one, ragged=ragged, devices=None)
    gpu.run_ragged([i.cuda() for i in images], [p.cuda() for p in probs], DenseCRF().params)
    assert calls == ["ragged"]


@pytest.mark.skipif(not get_backend("numba").available(), reason="needs numba (fast extra)")
def test_numba_ragged_takes_cuda_tensors_and_returns_them_there() -> None:
    images, probs = as_torch(*ragged_photos())
    crf = DenseCRF(backend="numba")
    out = crf([i.cuda() for i in images], [p.cuda() for p in probs], batched=True)
    for q, image, prob in zip(out, images, probs):
        assert q.device.type == "cuda"
        assert float((q.cpu() - crf(image, prob)).abs().max()) < 1e-5


def test_cuda_gradients_flow() -> None:
    images, probs = four_photos()
    p = probs[:2].cuda().requires_grad_(True)
    DenseCRF(iterations=3)(images[:2].cuda(), p)[:, 0].sum().backward()
    assert p.grad is not None and torch.isfinite(p.grad).all() and p.grad.abs().sum() > 0


@pytest.mark.skipif(not get_backend("numba").available(), reason="needs numba (fast extra)")
def test_numba_backend_takes_cuda_tensors_and_returns_them_there() -> None:
    images, probs = four_photos()
    out = DenseCRF(backend="numba")(images[:1].cuda(), probs[:1].cuda())
    assert out.device.type == "cuda"
    expected = reference(images[:1], probs[:1], "resnet101-voc")
    assert float((out.cpu() - expected).abs().max()) <= 1e-4


@pytest.mark.parametrize("channels", [1, 21, 84])
def test_nvrtc_kernel_matches_cusparse(channels: int) -> None:
    torch.manual_seed(0)
    features = torch.rand(2, 3000, 5, device="cuda") * torch.tensor(
        [9.0, 9.0, 4, 4, 4], device="cuda"
    )
    lattice = PermutohedralLattice(features)
    assert cuda_spmm._kernel(torch.cuda.current_device()) is not None, "NVRTC compile failed"
    for matrix in [lattice._splat, *lattice._blur, lattice._slice]:
        values = torch.rand(matrix.shape[1], channels, device="cuda")
        product = cuda_spmm.spmm(matrix, values)
        assert product is not None and product.shape == (matrix.shape[0], channels)
        torch.testing.assert_close(product, matrix @ values, atol=1e-5, rtol=1e-5)
    # int64 indices are left to cuSPARSE
    wide = lattice._splat
    wide = csr_tensor(wide.crow_indices().long(), wide.col_indices().long(), wide.values(),
                      wide.shape)  # fmt: skip
    assert cuda_spmm.spmm(wide, torch.rand(wide.shape[1], channels, device="cuda")) is None
