"""The native torch backend against the pydensecrf reference on real photographs."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from skimage import data as skdata

from deeplabv2.crf import DenseCRF
from deeplabv2.crf.synthetic import coarse_probs

pytest.importorskip("pydensecrf.densecrf", reason="the parity tests need pydensecrf2 (crf extra)")

PHOTOS = {
    "coffee-500x375": lambda: skdata.coffee()[:375, :500],
    "chelsea-451x300": lambda: skdata.chelsea(),  # non-square, odd width
    # 257 * 193 pixels is not a multiple of 4 and the image has black areas: this exercises
    # the reference's zero-feature padding points (see deeplabv2.crf.lattice)
    "astronaut-257x193": lambda: skdata.astronaut()[100:293, 50:307],
}


def photo(name: str) -> np.ndarray:
    return np.ascontiguousarray(PHOTOS[name]())


def compare(image: np.ndarray, probs: np.ndarray, **params) -> tuple[float, float]:
    reference = DenseCRF(backend="pydensecrf", **params)(image, probs)
    native = DenseCRF(backend="torch", **params)(image, probs)
    assert native.shape == reference.shape == probs.shape
    max_diff = float(np.abs(native - reference).max())
    agreement = float((native.argmax(0) == reference.argmax(0)).mean())
    return max_diff, agreement


@pytest.mark.parametrize("name", sorted(PHOTOS))
def test_parity_at_deeplab_settings(name: str) -> None:
    image = photo(name)
    probs = coarse_probs(image, 21, seed=1)
    max_diff, agreement = compare(image, probs)
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
def test_parity_variants(params: dict) -> None:
    image = photo("chelsea-451x300")[:200, :301]
    probs = coarse_probs(image, 5, seed=2)
    max_diff, agreement = compare(image, probs, **params)
    assert max_diff <= 1e-4
    assert agreement >= 0.9999


def test_parity_batched_torch_tensors() -> None:
    images = [photo("astronaut-257x193"), np.ascontiguousarray(photo("coffee-500x375")[:193, :257])]
    probs = np.stack([coarse_probs(im, 8, seed=i) for i, im in enumerate(images)])
    image_t = torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2)
    probs_t = torch.from_numpy(probs)
    reference = DenseCRF(backend="pydensecrf")(image_t, probs_t)
    native = DenseCRF(backend="torch")(image_t, probs_t)
    assert float((native - reference).abs().max()) <= 1e-4


def test_parity_with_a_compatibility_matrix() -> None:
    image = photo("chelsea-451x300")[:160, :211]
    probs = coarse_probs(image, 5, seed=3)
    rng = np.random.default_rng(0)
    matrix = -np.eye(5) + 0.3 * rng.standard_normal((5, 5))  # asymmetric: densecrf symmetrises
    max_diff, agreement = compare(image, probs, compatibility=matrix)
    assert max_diff <= 1e-4 and agreement >= 0.9999
    # and the matrix matters: Potts gives another result
    potts = DenseCRF(backend="torch")(image, probs)
    learned = DenseCRF(backend="torch", compatibility=matrix)(image, probs)
    assert np.abs(potts - learned).max() > 1e-3
    # Potts written as a matrix is Potts
    as_matrix = DenseCRF(backend="torch", compatibility=-np.eye(5))(image, probs)
    assert np.abs(as_matrix - potts).max() < 1e-5
