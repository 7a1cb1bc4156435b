"""The compiled (numba) backend against the pure PyTorch lattice it compiles, and its fallbacks.

Parity with pydensecrf on real photographs is in test_parity.py (parametrised over backends).
"""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
import torch

from deeplabv2.crf import PRESETS, CRFParams, DenseCRF
from deeplabv2.crf.backends import numba as numba_backend
from deeplabv2.crf.backends import torch as torch_backend
from deeplabv2.crf.lattice import PermutohedralLattice
from deeplabv2.crf.lattice.geometry import key_layout

needs_numba = pytest.mark.skipif(
    not numba_backend.BACKEND.available(), reason="needs numba (fast extra)"
)


def random_image(seed: int, h: int, w: int, classes: int) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    image = torch.randint(0, 256, (1, 3, h, w), dtype=torch.uint8, generator=g)
    probs = torch.softmax(3 * torch.randn(1, classes, h, w, generator=g), dim=1)
    return image, probs


@needs_numba
@pytest.mark.parametrize("d", [2, 5])
def test_compiled_simplices_are_the_torch_ones_exactly(d: int) -> None:
    g = torch.Generator().manual_seed(d)
    features = torch.randn(4000, d, generator=g) * 20
    features[:1000] = torch.randint(-5, 5, (1000, d), generator=g).float()  # ties in the ranks
    features[1000:1010] = 0.0
    rem0, rank, bary = PermutohedralLattice._simplices(features)
    c_rem0, c_rank, c_bary = numba_backend.simplices(features.numpy())
    np.testing.assert_array_equal(c_rem0, rem0.numpy())
    np.testing.assert_array_equal(c_rank, rank.numpy())
    np.testing.assert_array_equal(c_bary, bary.numpy())


@needs_numba
@pytest.mark.parametrize("d", [2, 5])
def test_compiled_keys_are_the_torch_ones_exactly(d: int) -> None:
    g = torch.Generator().manual_seed(10 + d)
    features = torch.randn(3000, d, generator=g) * 7
    rem0, rank, _ = PermutohedralLattice._simplices(features)
    expected, strides = PermutohedralLattice._pack_vertices(
        rem0, rank, torch.zeros(len(features), dtype=torch.int64), 1
    )
    low, high = numba_backend.load_kernels().coordinate_range(rem0.numpy(), d)
    np.testing.assert_array_equal(low, rem0[:, :d].min(dim=0).values.numpy())
    np.testing.assert_array_equal(high, rem0[:, :d].max(dim=0).values.numpy())
    offsets, layout, _ = key_layout(low.tolist(), high.tolist(), 1)
    assert layout == strides
    keys = np.empty_like(rem0.numpy())
    numba_backend.load_kernels().pack_keys(
        rem0.numpy(), rank.numpy(), np.asarray(offsets), np.asarray(strides), keys
    )
    np.testing.assert_array_equal(keys, expected.numpy())


@needs_numba
def test_neighbour_table_matches_a_dictionary_lookup() -> None:
    rng = np.random.default_rng(0)
    # keys over several radix digits (up to 2^45), with many neighbours present
    base = rng.choice(2**45, size=300, replace=False).astype(np.int64)
    shifts = np.array([1, 97, 2**33 + 5], np.int64)
    distinct = np.unique(np.concatenate([base, base + shifts[0], base + shifts[2]]))
    distinct = distinct[rng.permutation(distinct.size)]  # vertices are not in key order
    table = numba_backend.load_kernels().neighbours(distinct, shifts)
    index = {int(key): v for v, key in enumerate(distinct)}
    m = distinct.size
    expected = np.array(
        [[[index.get(int(k) - int(s), m), index.get(int(k) + int(s), m)] for k in distinct]
         for s in shifts]
    )  # fmt: skip
    np.testing.assert_array_equal(table, expected)
    assert (table[0] < m).sum() > 300 and (table[1] < m).sum() == 0  # both kinds are tested


@needs_numba
@pytest.mark.parametrize("d, channels", [(2, 3), (5, 8), (5, 1)])
def test_compiled_filter_is_the_normalised_lattice(d: int, channels: int) -> None:
    g = torch.Generator().manual_seed(channels)
    features = torch.randn(1, 3001, d, generator=g) * 3  # 3001: not a multiple of 4
    values = torch.rand(1, 3001, channels, generator=g)
    expected = PermutohedralLattice(features).symmetric_normalized(2.5).filter(values)[0]
    compiled = numba_backend.CompiledLattice(features[0].numpy(), 2.5)
    assert compiled.num_vertices == PermutohedralLattice(features).num_vertices
    got = compiled.filter(values[0].numpy())
    np.testing.assert_allclose(got, expected.numpy(), rtol=1e-5, atol=1e-6)


@needs_numba
def test_scatter_and_gather_splats_are_the_same_bit_for_bit() -> None:
    """One thread scatters the points, several gather each vertex's points: same sums, same
    order."""
    g = torch.Generator().manual_seed(4)
    lattice = numba_backend.CompiledLattice((torch.randn(3001, 5, generator=g) * 2).numpy(), 1.5)
    values = torch.rand(3001, 8, generator=g).numpy()
    compiled = numba_backend.load_kernels()
    scattered, gathered = lattice.buffers(8)[0], lattice.buffers(8)[0]
    compiled.splat_scatter(lattice.vertex, lattice.splat_weight, values, scattered)
    lists = compiled.gather_lists(lattice.vertex, lattice.splat_weight, lattice.num_vertices)
    compiled.splat(*lists, values, gathered)
    assert np.array_equal(scattered, gathered)
    assert (scattered[:-1] != 0).any(axis=1).mean() > 0.9 and not scattered[-1].any()


@needs_numba
@pytest.mark.parametrize("classes", [2, 8, 9])  # padded to 8, 8, 16 channels
@pytest.mark.parametrize("preset", sorted(PRESETS))
def test_mean_field_matches_the_torch_backend(classes: int, preset: str) -> None:
    image, probs = random_image(classes, 23, 31, classes)
    params = PRESETS[preset]
    expected = torch_backend.mean_field(image, probs, params)
    got = numba_backend.mean_field(image, probs, params)
    assert got.shape == probs.shape and got.dtype == torch.float32
    # ten iterations on noise amplify float32 rounding at a few pixels: the parity bar at most,
    # and no more than rounding on average
    torch.testing.assert_close(got, expected, atol=1e-4, rtol=0)
    assert (got - expected).abs().mean() < 1e-6
    assert (got - probs).abs().max() > 0.05  # the CRF did something


@needs_numba
@pytest.mark.parametrize(
    "params",
    [
        CRFParams(iterations=0),
        CRFParams(iterations=3, bi_w=0),
        CRFParams(iterations=3, pos_w=0),
        CRFParams(iterations=3, bi_w=0, pos_w=0),
        CRFParams(iterations=4, compatibility=[[-1, 0.5, 0], [0.1, -1, 0.2], [0, 0.2, -2]]),
    ],
    ids=["0-iter", "gaussian-only", "bilateral-only", "no-kernel", "compatibility"],
)
def test_mean_field_variants_match_the_torch_backend(params: CRFParams) -> None:
    image, probs = random_image(7, 17, 20, 3)
    expected = torch_backend.mean_field(image, probs, params)
    got = numba_backend.mean_field(image, probs, params)
    torch.testing.assert_close(got, expected, atol=2e-6, rtol=0)


@needs_numba
def test_results_do_not_depend_on_the_thread_count() -> None:
    image, probs = random_image(3, 40, 50, 21)
    previous = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        one = numba_backend.mean_field(image, probs, PRESETS["resnet101-voc"])
        torch.set_num_threads(2)
        two = numba_backend.mean_field(image, probs, PRESETS["resnet101-voc"])
    finally:
        torch.set_num_threads(previous)
    assert torch.equal(one, two)  # no reduction crosses threads: bit for bit


@needs_numba
def test_torch_thread_count_is_left_alone() -> None:
    """numba's OpenMP pool, started on first use, must not change torch's thread count."""
    code = (
        "import torch\n"
        "torch.set_num_threads(1)\n"
        "from deeplabv2.crf import DenseCRF\n"
        "image = torch.zeros(3, 8, 8, dtype=torch.uint8)\n"
        "DenseCRF(backend='numba')(image, torch.full((2, 8, 8), 0.5))\n"
        "print('THREADS', torch.get_num_threads())\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    assert "THREADS 1" in out


@needs_numba
def test_numba_backend_refuses_gradients() -> None:
    image, probs = random_image(0, 9, 9, 3)
    with pytest.raises(ValueError, match="'numba' backend is not differentiable"):
        DenseCRF(backend="numba")(image, probs.requires_grad_())


def test_without_numba_the_backend_names_the_extra_and_auto_falls_back() -> None:
    code = (
        "import sys; sys.modules['numba'] = None\n"
        "import torch\n"
        "from deeplabv2.crf import DenseCRF, get_backend\n"
        "assert not get_backend('numba').available()\n"
        "try:\n"
        "    DenseCRF(backend='numba')\n"
        "except ImportError as exc:\n"
        "    print('ERROR', exc)\n"
        "print('AUTO', DenseCRF().backend_for(torch.zeros(1, 2, 3, 3)))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    assert "ERROR the 'numba' CRF backend needs numba: pip install 'deeplabv2[fast]'" in out
    assert "AUTO numba" not in out and "AUTO " in out
