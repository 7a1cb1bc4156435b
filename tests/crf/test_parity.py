"""The native CPU backends (torch, numba) against pydensecrf on real photographs.

The CUDA path is in test_cuda.py.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from deeplabv2.crf import PRESETS, DenseCRF, get_backend
from deeplabv2.crf.synthetic import coarse_probs

from .photos import PHOTOS, four_photos, photo

pytest.importorskip("pydensecrf.densecrf", reason="the parity tests need pydensecrf2 (crf extra)")

NATIVE = [
    "torch",
    pytest.param(
        "numba",
        marks=pytest.mark.skipif(
            not get_backend("numba").available(), reason="needs numba (fast extra)"
        ),
    ),
]


def compare(image: np.ndarray, probs: np.ndarray, backend: str, **params) -> tuple[float, float]:
    reference = DenseCRF(backend="pydensecrf", **params)(image, probs)
    native = DenseCRF(backend=backend, **params)(image, probs)
    assert native.shape == reference.shape == probs.shape
    max_diff = float(np.abs(native - reference).max())
    agreement = float((native.argmax(0) == reference.argmax(0)).mean())
    return max_diff, agreement


@pytest.mark.parametrize("backend", NATIVE)
@pytest.mark.parametrize("name", sorted(PHOTOS))
def test_parity_at_deeplab_settings(name: str, backend: str) -> None:
    image = photo(name)
    probs = coarse_probs(image, 21, seed=1)
    max_diff, agreement = compare(image, probs, backend)
    assert max_diff <= 1e-4
    assert agreement >= 0.9999
    # the CRF must actually have changed something for the comparison to mean anything
    changed = DenseCRF()(image, probs).argmax(0) != probs.argmax(0)
    assert changed.mean() > 0.001


@pytest.mark.parametrize(
    "params",
    [
        {"iterations": 1},
        {"iterations": 5},
        {"bi_w": 0},  # smoothness kernel alone
        {"pos_w": 0},  # appearance kernel alone
        {"bi_w": 4, "bi_xy_std": 65, "bi_rgb_std": 3, "pos_w": 2, "pos_xy_std": 2},  # VGG-16
        {"iterations": 0},
    ],
    ids=["1-iter", "5-iter", "gaussian-only", "bilateral-only", "vgg16", "0-iter"],
)
@pytest.mark.parametrize("backend", NATIVE)
def test_parity_variants(params: dict, backend: str) -> None:
    image = photo("chelsea-451x300")[:200, :301]
    probs = coarse_probs(image, 5, seed=2)
    max_diff, agreement = compare(image, probs, backend, **params)
    assert max_diff <= 1e-4
    assert agreement >= 0.9999


def check_batch(images: torch.Tensor, probs: torch.Tensor, backend: str, preset: str) -> None:
    reference = DenseCRF.from_preset(preset, backend="pydensecrf")(images, probs)
    native = DenseCRF.from_preset(preset, backend=backend)(images, probs).cpu()
    assert native.shape == reference.shape == probs.shape
    assert float((native - reference).abs().max()) <= 1e-4
    assert float((native.argmax(1) == reference.argmax(1)).float().mean()) >= 0.9999
    # each image got its own result: the batch is not one image repeated
    assert all(not torch.equal(native[0], other) for other in native[1:])


@pytest.mark.parametrize("preset", sorted(PRESETS))
@pytest.mark.parametrize("backend", NATIVE)
@pytest.mark.parametrize("batch", [1, 4])
def test_parity_batches_of_different_photos(batch: int, backend: str, preset: str) -> None:
    images, probs = four_photos()
    if batch == 1:
        images, probs = images[2:3], probs[2:3]
        assert probs.shape[0] == 1
    else:
        assert images.shape[0] == 4
    check_batch(images, probs, backend, preset)


@pytest.mark.parametrize("backend", NATIVE)
def test_parity_with_a_compatibility_matrix(backend: str) -> None:
    image = photo("chelsea-451x300")[:160, :211]
    probs = coarse_probs(image, 5, seed=3)
    rng = np.random.default_rng(0)
    matrix = -np.eye(5) + 0.3 * rng.standard_normal((5, 5))  # asymmetric: densecrf symmetrises
    max_diff, agreement = compare(image, probs, backend, compatibility=matrix)
    assert max_diff <= 1e-4 and agreement >= 0.9999
    # and the matrix matters: Potts gives another result
    potts = DenseCRF(backend=backend)(image, probs)
    learned = DenseCRF(backend=backend, compatibility=matrix)(image, probs)
    assert np.abs(potts - learned).max() > 1e-3
    # Potts written as a matrix is Potts
    as_matrix = DenseCRF(backend=backend, compatibility=-np.eye(5))(image, probs)
    assert np.abs(as_matrix - potts).max() < 1e-5
