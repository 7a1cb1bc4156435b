"""DenseCRF: API, input types and validation, presets, backends, gradients, devices."""

from __future__ import annotations

import sys
import types

import numpy as np
import pytest
import torch
from skimage import data as skdata

from deeplabv2.crf import PRESETS, CRFParams, DenseCRF, get_backend
from deeplabv2.crf.backends import pydensecrf as pydensecrf_backend
from deeplabv2.crf.synthetic import coarse_probs


@pytest.fixture(scope="module")
def image() -> np.ndarray:
    return np.ascontiguousarray(skdata.chelsea()[100:165, 150:215])  # 65x65 RGB uint8


@pytest.fixture(scope="module")
def probs(image: np.ndarray) -> np.ndarray:
    return coarse_probs(image, 4, seed=3)


def test_defaults_are_the_resnet101_release_settings() -> None:
    crf = DenseCRF()
    assert crf.params == CRFParams(10, 4, 67, 3, 3, 1)
    assert crf.params == PRESETS["resnet101-voc"]
    assert crf.backend == "auto"
    probs = torch.full((2, 4, 4), 0.5)
    # the fastest installed CPU backend: both are installed by the dev extra
    assert crf.backend_for(probs) == ("numba" if get_backend("numba").available() else "pydensecrf")
    assert crf.backend_for(probs.requires_grad_()) == "torch"  # gradients: native only
    assert "bi_xy_std=67" in repr(crf)


def test_presets() -> None:
    assert DenseCRF.from_preset("vgg16-voc").params == CRFParams(10, 4, 65, 3, 2, 2)
    with pytest.raises(ValueError, match="unknown CRF preset 'nope'"):
        DenseCRF.from_preset("nope")


def test_numpy_in_numpy_out(image: np.ndarray, probs: np.ndarray) -> None:
    q = DenseCRF()(image, probs)
    assert isinstance(q, np.ndarray) and q.shape == probs.shape and q.dtype == np.float32
    np.testing.assert_allclose(q.sum(0), 1.0, atol=1e-5)
    assert not np.allclose(q, probs, atol=1e-3)
    q64 = DenseCRF()(image, probs.astype(np.float64))
    assert q64.dtype == np.float64
    np.testing.assert_allclose(q64, q, atol=1e-6)


def test_torch_in_torch_out_and_batching(image: np.ndarray, probs: np.ndarray) -> None:
    image_t = torch.from_numpy(image).permute(2, 0, 1)
    probs_t = torch.from_numpy(probs)
    single = DenseCRF()(image_t, probs_t)
    assert isinstance(single, torch.Tensor) and single.shape == probs_t.shape
    np.testing.assert_allclose(single.numpy(), DenseCRF()(image, probs), atol=1e-6)

    other = torch.from_numpy(np.ascontiguousarray(skdata.astronaut()[:65, :65])).permute(2, 0, 1)
    images = torch.stack([image_t, other])
    batch_probs = torch.stack(
        [probs_t, torch.from_numpy(coarse_probs(other.permute(1, 2, 0).numpy(), 4))]
    )
    batched = DenseCRF()(images, batch_probs)
    for i in range(2):
        torch.testing.assert_close(batched[i], DenseCRF()(images[i], batch_probs[i]))
    # a batch built at once on the lattice (the GPU path) equals the per-image CPU loop
    from deeplabv2.crf.backends.torch import mean_field_batch

    together = mean_field_batch(images, batch_probs, DenseCRF().params)
    torch.testing.assert_close(together, batched, atol=1e-5, rtol=0)

    np_batched = DenseCRF()(images.permute(0, 2, 3, 1).numpy(), batch_probs.numpy())
    np.testing.assert_allclose(np_batched, batched.numpy(), atol=1e-6)


def test_from_logits_and_labels(image: np.ndarray, probs: np.ndarray) -> None:
    logits = np.log(probs) + 3.0  # softmax(logits) == probs
    crf = DenseCRF(iterations=3)
    np.testing.assert_allclose(crf(image, logits, from_logits=True), crf(image, probs), atol=1e-5)
    labels = crf.labels(image, probs)
    assert labels.shape == image.shape[:2] and labels.dtype == np.int64
    np.testing.assert_array_equal(labels, crf(image, probs).argmax(0))
    image_t = torch.from_numpy(image).permute(2, 0, 1)[None]
    labels_t = crf.labels(image_t, torch.from_numpy(probs)[None])
    assert labels_t.shape == (1, 65, 65) and labels_t.dtype == torch.int64


def test_crf_snaps_labels_to_colour_edges() -> None:
    """A two-colour image with a blurred, shifted boundary in the unary: the CRF moves it back."""
    image = np.zeros((40, 40, 3), np.uint8)
    image[:, 20:] = (200, 180, 160)
    probs = np.zeros((2, 40, 40), np.float32)
    ramp = np.clip((np.arange(40) - 14) / 12, 0.05, 0.95)  # boundary blurred around x = 20
    probs[1] = ramp[None, :]
    probs[0] = 1 - probs[1]
    before = (probs.argmax(0) != (np.arange(40)[None, :] >= 20)).sum()
    labels = DenseCRF(bi_xy_std=10, bi_rgb_std=10, bi_w=10).labels(image, probs)
    after = (labels != (np.arange(40)[None, :] >= 20)).sum()
    assert before > 0 and after == 0


def test_gradient_flows_to_probs(image: np.ndarray, probs: np.ndarray) -> None:
    image_t = torch.from_numpy(image[:17, :19].copy()).permute(2, 0, 1)
    base = torch.from_numpy(probs[:, :17, :19].copy())
    weights = torch.rand(base.shape, generator=torch.Generator().manual_seed(0))
    crf = DenseCRF(iterations=2)

    def objective(p: torch.Tensor) -> torch.Tensor:
        return (crf(image_t, p) * weights).sum()

    p = base.clone().requires_grad_(True)
    objective(p).backward()
    direction = base * torch.randn(base.shape, generator=torch.Generator().manual_seed(1)) * 0.01
    eps = 0.5
    with torch.no_grad():
        numeric = (objective(base + eps * direction) - objective(base - eps * direction)) / (
            2 * eps
        )
    analytic = (p.grad * direction).sum()
    assert p.grad.abs().sum() > 0
    torch.testing.assert_close(analytic, numeric, rtol=0.02, atol=1e-4)


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda im, p: (im, p[:, :60]), r"probs are \(60, 65\) \(H, W\) but the image is"),
        (lambda im, p: (im.astype(np.float32), p), "image must be uint8 RGB"),
        (lambda im, p: (im, (p * 100).astype(np.int64)), "floating-point"),
        (lambda im, p: (im, np.where(p > 0.5, np.nan, p)), "NaN or infinite"),
        (lambda im, p: (im, p - 0.5), "negative values"),
        (lambda im, p: (im, p[:1]), "at least 2 classes"),
        (lambda im, p: (im[..., :2], p), r"\(H, W, 3\) or \(B, H, W, 3\) RGB"),
        (lambda im, p: (im, p[None]), r"probs must be \(C, H, W\)"),
        (lambda im, p: (torch.from_numpy(im), p), "both be numpy arrays or both torch tensors"),
    ],
    ids=[
        "size",
        "float-image",
        "int-probs",
        "nan",
        "negative",
        "one-class",
        "channels",
        "batch-mismatch",
        "mixed-types",
    ],
)
def test_bad_inputs(image: np.ndarray, probs: np.ndarray, make, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        DenseCRF()(*make(image, probs))


def test_bad_torch_layout(image: np.ndarray, probs: np.ndarray) -> None:
    hwc = torch.from_numpy(image)  # (H, W, 3) is the numpy layout, not the torch one
    with pytest.raises(ValueError, match=r"RGB \(3, H, W\) or \(B, 3, H, W\)"):
        DenseCRF()(hwc, torch.from_numpy(probs))
    images = torch.from_numpy(image).permute(2, 0, 1).expand(2, 3, 65, 65)
    with pytest.raises(ValueError, match="batch sizes differ: 2 images, 3 probs"):
        DenseCRF()(images, torch.from_numpy(probs).expand(3, 4, 65, 65))


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"bi_xy_std": 0}, "bi_xy_std must be a finite number > 0"),
        ({"pos_xy_std": -1}, "pos_xy_std must be a finite number > 0"),
        ({"bi_rgb_std": float("nan")}, "bi_rgb_std must be a finite number > 0"),
        ({"bi_w": -1}, "bi_w must be a finite number >= 0"),
        ({"iterations": -1}, "iterations must be >= 0"),
        ({"iterations": 2.5}, "iterations must be an int"),
        ({"backend": "cuda"}, "backend must be one of"),
    ],
)
def test_bad_parameters(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        DenseCRF(**kwargs)


def test_missing_pydensecrf_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "pydensecrf", None)
    monkeypatch.setitem(sys.modules, "pydensecrf.densecrf", None)
    with pytest.raises(ImportError, match=r"pip install 'deeplabv2\[crf\]'"):
        DenseCRF(backend="pydensecrf")
    assert not get_backend("pydensecrf").available()
    DenseCRF(backend="auto")  # the native backend needs nothing


def test_enums_of_cython3_builds_are_found() -> None:
    """Cython 3 builds keep the enum members inside NormalizationType / KernelType."""
    module = types.SimpleNamespace(
        KernelType=types.SimpleNamespace(DIAG_KERNEL="diag"),
        NormalizationType=types.SimpleNamespace(NORMALIZE_SYMMETRIC="sym"),
    )
    assert pydensecrf_backend._enum(module, "KernelType", "DIAG_KERNEL") == "diag"
    flat = types.SimpleNamespace(DIAG_KERNEL="flat-diag")
    assert pydensecrf_backend._enum(flat, "KernelType", "DIAG_KERNEL") == "flat-diag"


def test_reference_backend_refuses_gradients(image: np.ndarray, probs: np.ndarray) -> None:
    pytest.importorskip("pydensecrf.densecrf")
    p = torch.from_numpy(probs).requires_grad_(True)
    with pytest.raises(ValueError, match="not differentiable"):
        DenseCRF(backend="pydensecrf")(torch.from_numpy(image).permute(2, 0, 1), p)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_cuda_matches_cpu(image: np.ndarray, probs: np.ndarray) -> None:
    image_t = torch.from_numpy(image).permute(2, 0, 1).expand(3, 3, 65, 65)
    probs_t = torch.from_numpy(probs).expand(3, 4, 65, 65).contiguous()
    cpu = DenseCRF()(image_t, probs_t)
    gpu = DenseCRF()(image_t.cuda(), probs_t.cuda().requires_grad_(True))
    assert gpu.device.type == "cuda"
    gpu.sum().backward()
    torch.testing.assert_close(gpu.detach().cpu(), cpu, atol=1e-5, rtol=0)


def test_parameter_files_round_trip(tmp_path) -> None:
    crf = DenseCRF(5, bi_w=3.5, bi_xy_std=50, bi_rgb_std=4, pos_w=2, pos_xy_std=1.5,
                   compatibility=[[-1.0, 0.2], [0.4, -1.0]])  # fmt: skip
    path = crf.save(tmp_path / "crf.json")
    loaded = DenseCRF.from_file(path)
    assert loaded.params == crf.params
    assert np.allclose(loaded.params.compatibility, [[-1.0, 0.3], [0.3, -1.0]])  # symmetrised
    assert DenseCRF.from_spec(str(path)).params == crf.params
    assert DenseCRF.from_spec("vgg16-voc").params == PRESETS["vgg16-voc"]
    with pytest.raises(FileNotFoundError, match="neither a preset"):
        DenseCRF.from_spec("nope.json")
    (tmp_path / "bad.json").write_text('{"bi_w": 1, "sigma": 3}')
    with pytest.raises(ValueError, match=r"bad\.json: unknown CRF parameters \['sigma'\]"):
        DenseCRF.from_file(tmp_path / "bad.json")
    with pytest.raises(FileExistsError):
        crf.save(path)


def test_kernel_weights_and_compatibility_get_gradients() -> None:
    from deeplabv2.crf.backends.torch import mean_field

    torch.manual_seed(0)
    image = torch.randint(0, 256, (1, 3, 12, 14), dtype=torch.uint8)
    probs = torch.softmax(torch.randn(1, 3, 12, 14), dim=1)
    weights = torch.tensor([3.0, 4.0], requires_grad=True)
    matrix = (-torch.eye(3)).requires_grad_()
    q = mean_field(image, probs, PRESETS["resnet101-voc"], weights, matrix)
    q[0, 0].sum().backward()
    assert weights.grad is not None and weights.grad.abs().sum() > 0
    assert matrix.grad is not None and matrix.grad.abs().sum() > 0
    fixed = DenseCRF(backend="torch")(image, probs)  # the same weights as floats
    torch.testing.assert_close(q.detach(), fixed, atol=1e-5, rtol=1e-4)


def test_read_only_numpy_inputs_need_no_copy_by_the_caller(image: np.ndarray, probs: np.ndarray):
    """``np.asarray(PIL image)`` is read-only: the CRF takes it without torch's warning."""
    import warnings

    frozen_image, frozen_probs = image.copy(), probs.copy()
    frozen_image.flags.writeable = frozen_probs.flags.writeable = False
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        q = DenseCRF(iterations=2, backend="torch")(frozen_image, frozen_probs)
    np.testing.assert_array_equal(q, DenseCRF(iterations=2, backend="torch")(image, probs))
