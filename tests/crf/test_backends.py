"""The backend registry: the built-in backends, what ``"auto"`` picks, and the recipe for a new
backend (docs/crf.md, "Adding a CRF backend"), followed here by a toy one."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from typing import Callable

import numpy as np
import pytest
import torch

import deeplabv2.crf
from deeplabv2.crf import (
    Backend,
    CRFParams,
    DenseCRF,
    auto_backend,
    backend_help,
    get_backend,
    list_backends,
    register_backend,
    unregister_backend,
)
from deeplabv2.crf.potentials import bilateral_features, position_features, unary_from_probs


def test_the_built_in_backends() -> None:
    assert [b.name for b in list_backends()] == ["torch", "numba", "pydensecrf"]
    assert deeplabv2.crf.BACKENDS == ("auto", "torch", "numba", "pydensecrf")
    assert deeplabv2.crf.CPU_BACKENDS == ("numba", "pydensecrf")
    assert backend_help() == "auto: torch on a GPU; on the CPU numba, else pydensecrf, else torch"
    torch_backend = get_backend("torch")
    assert torch_backend.differentiable and torch_backend.runs_on("cuda")
    assert torch_backend.available()  # needs nothing beyond deeplabv2's own dependencies
    for name in ("numba", "pydensecrf"):
        backend = get_backend(name)
        assert backend.devices == ("cpu",) and not backend.differentiable
        assert not backend.runs_on("cuda")


def test_unknown_backends_and_names_are_refused() -> None:
    with pytest.raises(ValueError, match="no CRF backend called 'nope'"):
        get_backend("nope")
    with pytest.raises(ValueError, match=r"backend must be one of \('auto', 'torch'"):
        DenseCRF(backend="nope")
    with pytest.raises(ValueError, match="already registered"):
        register_backend(get_backend("torch"))
    with pytest.raises(ValueError, match="cannot be called 'auto'"):
        register_backend(dataclasses.replace(get_backend("torch"), name="auto"))


def requirement(state: dict[str, bool], name: str) -> Callable[[], None]:
    """A ``require`` that fails while ``state[name]`` is False."""

    def require() -> None:
        if not state[name]:
            raise ImportError(f"{name} is not installed")

    return require


@pytest.fixture
def installed() -> Iterator[dict[str, bool]]:
    """Which of numba and pydensecrf count as installed: the registry's records are swapped
    for copies whose ``require`` follows this dict, and restored afterwards."""
    state = {"numba": True, "pydensecrf": True}
    originals = [get_backend(name) for name in state]
    for original in originals:
        require = requirement(state, original.name)
        register_backend(dataclasses.replace(original, require=require), replace=True)
    yield state
    for original in originals:
        register_backend(original, replace=True)


def test_auto_prefers_numba_then_pydensecrf_then_torch(installed: dict[str, bool]) -> None:
    crf = DenseCRF()
    probs = torch.full((1, 2, 3, 3), 0.5)
    assert crf.backend_for(probs) == "numba"
    installed["numba"] = False
    assert crf.backend_for(probs) == "pydensecrf"
    installed["pydensecrf"] = False
    assert crf.backend_for(probs) == "torch"
    installed["numba"] = True
    assert crf.backend_for(probs.requires_grad_()) == "torch"  # gradients: differentiable only
    # CUDA tensors: the backends that compute there, whatever is installed for the CPU
    assert auto_backend("cuda", requires_grad=False).name == "torch"
    assert auto_backend("cpu", requires_grad=False).name == "numba"
    assert auto_backend("cpu", requires_grad=True).name == "torch"


def test_a_missing_backend_fails_when_chosen(installed: dict[str, bool]) -> None:
    installed["numba"] = False
    assert not get_backend("numba").available()
    with pytest.raises(ImportError, match="numba is not installed"):
        DenseCRF(backend="numba")


# -- the recipe: a toy backend -----------------------------------------------------------------


def naive_mean_field(images: torch.Tensor, probs: torch.Tensor, params: CRFParams) -> torch.Tensor:
    """Mean field with the exact Gaussian kernels as dense ``(N, N)`` matrices (tiny images
    only), Potts, symmetric normalisation: the :class:`~deeplabv2.crf.backends.MeanField`
    convention, ``(B, 3, H, W) uint8`` and ``(B, C, H, W) float32`` in, ``(B, C, H, W)
    float32`` out."""
    b, c, h, w = probs.shape
    out = []
    for i in range(b):
        kernels = []
        smoothness = position_features(1, h, w, params.pos_xy_std, "cpu")
        appearance = bilateral_features(images[i : i + 1], params.bi_xy_std, params.bi_rgb_std)
        for weight, feats in ((params.pos_w, smoothness), (params.bi_w, appearance)):
            f = feats[0].double().numpy()
            k = np.exp(-0.5 * ((f[:, None] - f[None]) ** 2).sum(-1))
            norm = 1.0 / np.sqrt(k.sum(1))
            kernels.append(weight * norm[:, None] * k * norm[None])
        unary = unary_from_probs(probs[i]).reshape(c, h * w).double().numpy()
        q = np.exp(-unary) / np.exp(-unary).sum(0)
        for _ in range(params.iterations):
            energy = -unary + sum(q @ k for k in kernels)  # (C, N) @ symmetric (N, N)
            q = np.exp(energy - energy.max(0)) / np.exp(energy - energy.max(0)).sum(0)
        out.append(torch.from_numpy(q.astype(np.float32).reshape(c, h, w)))
    return torch.stack(out)


TOY = Backend(
    name="toy",
    mean_field=naive_mean_field,
    devices=("cpu",),
    priority=100,  # above numba: "auto" runs it on the CPU
    summary="exact kernels as dense matrices (tests only)",
)


@pytest.fixture
def toy() -> Iterator[Backend]:
    register_backend(TOY)
    yield TOY
    unregister_backend("toy")
    assert "toy" not in deeplabv2.crf.BACKENDS and "toy" not in backend_help()


def two_regions() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A 10x12 two-colour image, probabilities whose boundary is blurred and shifted, and the
    true labels."""
    image = np.zeros((10, 12, 3), np.uint8)
    image[:, 6:] = (200, 180, 160)
    probs = np.zeros((2, 10, 12), np.float32)
    probs[1] = np.clip((np.arange(12) - 4) / 4, 0.05, 0.95)[None, :]
    probs[0] = 1 - probs[1]
    return image, probs, np.broadcast_to(np.arange(12)[None, :] >= 6, (10, 12))


def test_a_registered_backend_runs_and_is_listed(toy: Backend) -> None:
    assert "toy" in deeplabv2.crf.BACKENDS and get_backend("toy") is toy
    assert deeplabv2.crf.CPU_BACKENDS[0] == "toy"
    assert backend_help() == (
        "auto: torch on a GPU; on the CPU toy, else numba, else pydensecrf, else torch"
    )
    image, probs, truth = two_regions()
    params = {"bi_xy_std": 10, "bi_rgb_std": 10, "bi_w": 10}
    crf = DenseCRF(backend="toy", **params)
    q = crf(image, probs)
    assert isinstance(q, np.ndarray) and q.shape == probs.shape and q.dtype == np.float32
    np.testing.assert_allclose(q.sum(0), 1.0, atol=1e-5)
    assert (probs.argmax(0) != truth).any()
    np.testing.assert_array_equal(crf.labels(image, probs), truth)
    np.testing.assert_array_equal(DenseCRF(backend="torch", **params).labels(image, probs), truth)


def test_auto_picks_a_registered_backend_by_priority(toy: Backend) -> None:
    crf = DenseCRF()
    probs = torch.full((1, 2, 3, 3), 0.5)
    assert crf.backend_for(probs) == "toy"
    assert crf.backend_for(probs.requires_grad_()) == "torch"  # the toy is not differentiable
    image = torch.zeros(1, 3, 3, 3, dtype=torch.uint8)
    with pytest.raises(
        ValueError, match="'toy' backend is not differentiable; use backend='torch'"
    ):
        DenseCRF(backend="toy")(image, probs)
    low = dataclasses.replace(toy, priority=-1)
    register_backend(low, replace=True)  # below torch, which is always installed: never chosen
    assert crf.backend_for(probs.detach()) != "toy"
    assert backend_help().endswith("else torch, else toy")


@pytest.mark.parametrize("name", [b.name for b in list_backends()])
def test_every_backend_checks_the_compatibility_matrix_size(name: str) -> None:
    if not get_backend(name).available():
        pytest.skip(f"{name} is not installed")
    image = torch.zeros(1, 3, 4, 5, dtype=torch.uint8)
    probs = torch.full((1, 5, 4, 5), 0.2)
    with pytest.raises(ValueError, match=r"a \(3, 3\) compatibility matrix for 5 classes"):
        DenseCRF(iterations=1, backend=name, compatibility=-np.eye(3))(image, probs)
