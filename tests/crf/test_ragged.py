"""Images of different sizes in one call (a ragged batch): one lattice for all of them gives
what each image gives alone, and pydensecrf's result; the lattice keeps the images apart."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from deeplabv2.crf import Backend, DenseCRF, PermutohedralLattice, get_backend
from deeplabv2.crf.lattice.geometry import INT64_LIMIT, key_layout
from deeplabv2.crf.potentials import bilateral_features

from .photos import as_torch, ragged_photos

needs_numba = pytest.mark.skipif(
    not get_backend("numba").available(), reason="needs numba (fast extra)"
)
NATIVE = ["torch", pytest.param("numba", marks=needs_numba)]


@pytest.fixture(scope="module")
def photos() -> tuple[list[np.ndarray], list[np.ndarray]]:
    return ragged_photos()


@pytest.mark.parametrize("backend", NATIVE)
def test_one_lattice_equals_one_image_at_a_time(photos, backend: str) -> None:
    images, probs = as_torch(*photos)
    crf = DenseCRF(backend=backend)
    together = crf(images, probs, batched=True)
    assert isinstance(together, list) and len(together) == len(images)
    for image, prob, refined in zip(images, probs, together):
        alone = crf(image, prob)
        assert refined.shape == prob.shape and refined.dtype == torch.float32
        assert float((refined - alone).abs().max()) < 1e-5
    # the default (image by image on the CPU) gives the same
    for refined, default in zip(together, crf(images, probs)):
        assert float((refined - default).abs().max()) < 1e-5


@pytest.mark.parametrize("backend", NATIVE)
def test_ragged_matches_pydensecrf(photos, backend: str) -> None:
    pytest.importorskip("pydensecrf.densecrf", reason="needs pydensecrf2 (crf extra)")
    images, probs = photos
    reference = [DenseCRF(backend="pydensecrf")(im, p) for im, p in zip(images, probs)]
    refined = DenseCRF(backend=backend)(images, probs, batched=True)
    for ours, theirs in zip(refined, reference):
        assert float(np.abs(ours - theirs).max()) <= 1e-4
        assert float((ours.argmax(0) == theirs.argmax(0)).mean()) >= 0.999


def test_ragged_compatibility_matrix_and_gradients(photos) -> None:
    images, probs = as_torch(*photos)
    matrix = -np.eye(5) + 0.3 * (np.arange(5)[:, None] == np.arange(5)[None, :] + 1)
    crf = DenseCRF(iterations=3, compatibility=matrix, backend="torch")
    leaves = [p.clone().requires_grad_(True) for p in probs]
    together = crf(images, leaves, batched=True)
    for image, prob, refined in zip(images, probs, together):
        assert float((refined.detach() - crf(image, prob)).abs().max()) < 1e-5
    sum(q[0].sum() for q in together).backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in leaves)


def test_images_share_no_lattice_vertex() -> None:
    # the same features twice: shared keys would merge the two images' vertices
    image = torch.from_numpy(ragged_photos()[0][0]).permute(2, 0, 1)[None]
    feats = bilateral_features(image, 5.0, 3.0)[0]
    n = len(feats)
    single = PermutohedralLattice(feats[None])
    ragged = PermutohedralLattice(torch.cat([feats, feats[:-3]]), [n, n - 3])
    assert ragged.sizes == (n, n - 3) and ragged.batch == 2
    shorter = PermutohedralLattice(feats[None, :-3])
    assert ragged.num_vertices == single.num_vertices + shorter.num_vertices
    # a value in the first image reaches nothing in the second, and filters as alone
    values = torch.zeros(2 * n - 3, 2)
    values[:n, 0] = torch.rand(n)
    values[n:, 1] = torch.rand(n - 3)
    out = ragged.filter(values)
    assert out[n:, 0].abs().max() == 0 and out[:n, 1].abs().max() == 0
    torch.testing.assert_close(out[:n, :1], single.filter(values[None, :n, :1])[0])
    torch.testing.assert_close(out[n:, 1:], shorter.filter(values[None, n:, 1:])[0])
    with pytest.raises(ValueError, match="adding up to the"):
        PermutohedralLattice(feats, [n - 1])


@needs_numba
def test_compiled_lattice_keeps_images_apart() -> None:
    from deeplabv2.crf.backends.numba import CompiledLattice

    image = torch.from_numpy(ragged_photos()[0][3]).permute(2, 0, 1)[None]
    feats = bilateral_features(image, 5.0, 3.0)[0].numpy()
    n = len(feats)
    alone = CompiledLattice(feats, 2.0)
    ragged = CompiledLattice(np.concatenate([feats, feats]), 2.0, [n, n])
    assert ragged.num_vertices == 2 * alone.num_vertices
    assert not set(ragged.vertex[:n].ravel()) & set(ragged.vertex[n:].ravel())
    values = np.random.default_rng(0).random((2 * n, 3), dtype=np.float32)
    out = ragged.filter(values)
    np.testing.assert_allclose(out[:n], alone.filter(values[:n]), atol=1e-6)
    np.testing.assert_allclose(out[n:], alone.filter(values[n:]), atol=1e-6)


def test_key_layout_guard_counts_the_images() -> None:
    low, high = [-50] * 5, [50] * 5
    _, _, image_stride = key_layout(low, high, 1)
    key_layout(low, high, (INT64_LIMIT - 1) // image_stride)
    with pytest.raises(ValueError, match="too many lattice points"):
        key_layout(low, high, INT64_LIMIT // image_stride + 1)


def test_numpy_lists_in_numpy_lists_out(photos) -> None:
    images, probs = photos
    crf = DenseCRF(iterations=2, backend="torch")
    refined = crf(tuple(images), [p.astype(np.float64) for p in probs])
    assert isinstance(refined, list) and len(refined) == len(images)
    for q, p in zip(refined, probs):
        assert isinstance(q, np.ndarray) and q.shape == p.shape and q.dtype == np.float64
    labels = crf.labels(images, probs)
    assert [lab.shape for lab in labels] == [im.shape[:2] for im in images]
    assert all(lab.dtype == np.int64 for lab in labels)
    np.testing.assert_array_equal(labels[0], crf.labels(images[0], probs[0]))
    logits = [np.log(p) for p in probs]
    from_logits = crf(images, logits, from_logits=True)
    for a, b in zip(from_logits, crf(images, probs)):
        assert np.abs(a - b).max() < 1e-5
    assert crf([], []) == []


def _bad(images: list, probs: list) -> None:
    DenseCRF(iterations=1, backend="torch")(images, probs)


def test_errors_name_the_item(photos) -> None:
    images, probs = as_torch(*photos)
    cases = [
        (images, probs[:3], "4 images but 3 probs"),
        (images, [*probs[:2], probs[2], probs[0]], r"probs\[3\] are \(41, 63\) \(H, W\) but "),
        (images[:2], [probs[0], probs[1][:3]], r"probs\[1\] have 3 classes but probs\[0\] have 5"),
        (images[:2], [probs[0], probs[1].numpy()], r"images\[1\] and probs\[1\] must both be"),
        (images[:1], [probs[0] - 1], r"probs\[0\] contain negative values"),
        (images[:1], [probs[0].to(torch.int64)], r"probs\[0\] must be a floating-point"),
        ([images[0][None]], [probs[0][None]], r"images\[0\] and probs\[0\] are a batch"),
        (images[0], probs, "images is a Tensor: pass images and probs both as lists"),
        ([images[0][:2]], probs[:1], r"images\[0\] must be RGB \(3, H, W\)"),
    ]
    for bad_images, bad_probs, message in cases:
        with pytest.raises(ValueError, match=message):
            _bad(bad_images, bad_probs)
    numpy_images, numpy_probs = photos
    with pytest.raises(ValueError, match=r"probs\[1\] are torch tensors on cpu but probs\[0\]"):
        _bad([numpy_images[0], images[1]], [numpy_probs[0], probs[1]])
    with pytest.raises(ValueError, match="batched= applies to lists"):
        DenseCRF(backend="torch")(images[0], probs[0], batched=True)


def test_run_ragged_loops_on_the_cpu_unless_asked(photos) -> None:
    images, probs = as_torch(*photos)
    calls: list[str] = []

    def one(image: torch.Tensor, prob: torch.Tensor, params) -> torch.Tensor:
        calls.append("one")
        return prob.clone()

    def ragged(images: list, probs: list, params) -> list:
        calls.append("ragged")
        return [p.clone() for p in probs]

    params = DenseCRF().params
    backend = Backend(name="recording", mean_field=one, ragged=ragged)
    backend.run_ragged(images, probs, params)
    assert calls == ["one"] * len(images)
    calls.clear()
    out = backend.run_ragged(images, probs, params, batched=True)
    assert calls == ["ragged"] and all(torch.equal(a, b) for a, b in zip(out, probs))
    calls.clear()
    Backend(name="plain", mean_field=one).run_ragged(images, probs, params, batched=True)
    assert calls == ["one"] * len(images)
    assert backend.run_ragged([], [], params) == []
    with pytest.raises(ValueError, match="not differentiable"):
        backend.run_ragged(images, [probs[0].clone().requires_grad_(True)], params)
