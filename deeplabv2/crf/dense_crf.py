"""``DenseCRF``: the fully connected CRF of DeepLab, run by any registered backend."""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import NamedTuple, Optional, Union, cast

import numpy as np
import torch
from torch import Tensor, nn

from ..data.transforms import numpy_to_tensor
from .backends.registry import AUTO, auto_backend, backend_choices, get_backend
from .params import PRESETS, CRFParams, Matrix

__all__ = ["DenseCRF"]

ArrayLike = Union[np.ndarray, Tensor]


class DenseCRF(nn.Module):
    """Fully connected CRF with Gaussian edge potentials (Krähenbühl & Koltun 2011).

    Mean-field inference with Potts compatibility and two kernels, as in DeepLab v2:

    * appearance: ``bi_w * exp(-|p_i - p_j|^2 / 2 bi_xy_std^2 - |I_i - I_j|^2 / 2 bi_rgb_std^2)``
    * smoothness: ``pos_w * exp(-|p_i - p_j|^2 / 2 pos_xy_std^2)``

    The defaults are the release's DeepLab v2 ResNet-101 VOC 2012 settings; see :data:`PRESETS`
    and :meth:`from_preset` for the VGG-16 ones.

    Args:
        iterations: mean-field iterations (10).
        bi_w: weight of the appearance kernel (4).
        bi_xy_std: its spatial standard deviation, in pixels (67).
        bi_rgb_std: its colour standard deviation, in 0..255 intensity units (3).
        pos_w: weight of the smoothness kernel (3).
        pos_xy_std: its spatial standard deviation, in pixels (1).
        compatibility: None for Potts (DeepLab's), or a ``C x C`` label compatibility matrix
            in densecrf's convention (Potts is ``-I``; see :class:`CRFParams`), e.g. one learned
            by ``examples/tune_crf.py --method gradient``.
        backend: ``"torch"`` (native permutohedral lattice in PyTorch; batched; CPU or GPU;
            differentiable with respect to the probabilities), ``"numba"`` (the same lattice
            compiled for the CPU, the fastest there; needs ``pip install 'deeplabv2[fast]'``),
            ``"pydensecrf"`` (the reference C++ code, CPU; needs ``pip install
            'deeplabv2[crf]'``) or ``"auto"``: per call, ``"torch"`` for CUDA tensors and for
            probabilities that need gradients, else the first installed of
            :data:`CPU_BACKENDS`, else ``"torch"`` (``deeplabv2.crf.auto_backend``). A backend
            added with ``deeplabv2.crf.register_backend`` is accepted too. All agree to float32
            precision; the CPU-only backends take tensors on any device and return them there.

    Call ``crf(image, probs)``:

    * ``image``: the RGB image, ``uint8`` 0..255 -- never the mean-subtracted network input.
      numpy ``(H, W, 3)`` / ``(B, H, W, 3)`` or torch ``(3, H, W)`` / ``(B, 3, H, W)``.
    * ``probs``: class probabilities ``(C, H, W)`` / ``(B, C, H, W)``, floating point, of the
      same family (numpy or torch) and batching as ``image``; ``from_logits=True`` takes logits
      and applies a softmax over ``C`` first.
    * returns refined probabilities with the shape, type, dtype and device of ``probs``.

    Images of different sizes go in one call as lists (or tuples) of single images:
    ``crf([image_0, image_1, ...], [probs_0, probs_1, ...])`` returns a list
    (:meth:`refine_list`).
    """

    def __init__(
        self,
        iterations: int = 10,
        bi_w: float = 4.0,
        bi_xy_std: float = 67.0,
        bi_rgb_std: float = 3.0,
        pos_w: float = 3.0,
        pos_xy_std: float = 1.0,
        backend: str = "auto",
        compatibility: Optional[Union[Sequence[Sequence[float]], np.ndarray, Tensor]] = None,
    ) -> None:
        super().__init__()
        if backend not in backend_choices():
            raise ValueError(f"backend must be one of {backend_choices()}, got {backend!r}")
        matrix: Optional[Matrix] = None
        if compatibility is not None:
            rows = (
                compatibility.tolist()
                if isinstance(compatibility, (np.ndarray, Tensor))
                else compatibility
            )
            matrix = tuple(tuple(row) for row in rows)  # CRFParams checks and symmetrises it
        self.params = CRFParams(iterations, bi_w, bi_xy_std, bi_rgb_std, pos_w, pos_xy_std, matrix)
        self.backend = backend
        if backend != AUTO:
            get_backend(backend).require()  # fail now, with the install hint, not at first call

    @classmethod
    def from_params(cls, params: CRFParams, backend: str = "auto") -> DenseCRF:
        """A CRF with the given :class:`CRFParams`."""
        values = params.as_dict()
        return cls(**values, backend=backend)

    @classmethod
    def from_preset(cls, name: str, backend: str = "auto") -> DenseCRF:
        """A CRF with the settings of a named preset (``"resnet101-voc"``, ``"vgg16-voc"``)."""
        if name not in PRESETS:
            raise ValueError(f"unknown CRF preset {name!r}; available: {sorted(PRESETS)}")
        return cls.from_params(PRESETS[name], backend)

    @classmethod
    def from_file(cls, path: Union[str, os.PathLike], backend: str = "auto") -> DenseCRF:
        """A CRF with the parameters of a JSON file (:meth:`save`, ``examples/tune_crf.py``)."""
        return cls.from_params(CRFParams.load(path), backend)

    @classmethod
    def from_spec(cls, spec: str, backend: str = "auto") -> DenseCRF:
        """A preset name (``"vgg16-voc"``) or a parameter file's path (CLI ``--crf-params``)."""
        if spec in PRESETS:
            return cls.from_preset(spec, backend)
        if not os.path.isfile(spec):
            raise FileNotFoundError(
                f"{spec!r} is neither a preset ({', '.join(sorted(PRESETS))}) nor an existing "
                "CRF parameter file"
            )
        return cls.from_file(spec, backend)

    def save(self, path: Union[str, os.PathLike], force: bool = False) -> os.PathLike:
        """Write the parameters to a JSON file that :meth:`from_file` reads back."""
        return self.params.save(path, force=force)

    def extra_repr(self) -> str:
        values = self.params.as_dict()
        if values["compatibility"] is not None:
            values["compatibility"] = (
                f"<{len(values['compatibility'])}x{len(values['compatibility'])}>"
            )
        fields = ", ".join(f"{k}={v}" for k, v in values.items())
        return f"{fields}, backend={self.backend!r}"

    def forward(
        self,
        image: Union[ArrayLike, Sequence[ArrayLike]],
        probs: Union[ArrayLike, Sequence[ArrayLike]],
        from_logits: bool = False,
        *,
        batched: Optional[bool] = None,
    ) -> Union[ArrayLike, list[ArrayLike]]:
        """Refined probabilities; see the class docstring for shapes and types. ``batched``
        is for lists only (:meth:`refine_list`)."""
        if isinstance(image, (list, tuple)) or isinstance(probs, (list, tuple)):
            return self.refine_list(
                cast(Sequence[ArrayLike], image),
                cast(Sequence[ArrayLike], probs),
                from_logits,
                batched=batched,
            )
        if batched is not None:
            raise ValueError(
                "batched= applies to lists of images of different sizes; a (B, ...) batch of "
                "equal-size images runs as the backend decides"
            )
        item = _prepare(cast(ArrayLike, image), cast(ArrayLike, probs), from_logits)
        q = get_backend(self.backend_for(item.probs)).run(item.image, item.probs, self.params)
        return item.output(q)

    def refine_list(
        self,
        images: Sequence[ArrayLike],
        probs: Sequence[ArrayLike],
        from_logits: bool = False,
        *,
        batched: Optional[bool] = None,
    ) -> list[ArrayLike]:
        """Refined probabilities of images of possibly different sizes, in one call.

        Args:
            images: a list (or tuple) of single RGB ``uint8`` images, numpy ``(H_i, W_i, 3)``
                or torch ``(3, H_i, W_i)``.
            probs: a list of as many ``(C, H_i, W_i)`` floating-point probabilities (logits
                with ``from_logits=True``) of the same family, the same ``C`` and one device.
            batched: True: one lattice per kernel over all the images' points, one filter per
                kernel and iteration (what runs on a GPU); False: image by image; None: one
                lattice on a GPU, image by image on the CPU, which measured faster there
                (``docs/benchmarks.md``). The results are the same.

        Returns:
            a list of refined ``(C, H_i, W_i)`` probabilities with each item's type, dtype and
            device; an empty list for empty lists. ValueError naming the position ``i`` of a bad
            item.
        """
        items = _prepare_list(images, probs, from_logits)
        if not items:
            return []
        image_ts = [item.image[0] for item in items]
        probs_ts = [item.probs[0] for item in items]
        backend = get_backend(self.backend_for(probs_ts))
        refined = backend.run_ragged(image_ts, probs_ts, self.params, batched=batched)
        return [item.output(q[None]) for item, q in zip(items, refined)]

    def backend_for(self, probs: Union[Tensor, Sequence[Tensor]]) -> str:
        """The name of the backend that runs for these ``(B, C, H, W)`` probabilities, or a list
        of ``(C, H_i, W_i)`` ones (resolves ``"auto"`` by their device and whether they need
        gradients)."""
        if self.backend != AUTO:
            return self.backend
        group = [probs] if isinstance(probs, Tensor) else list(probs)
        requires_grad = any(p.requires_grad for p in group)
        return auto_backend(group[0].device.type, requires_grad).name

    def labels(
        self,
        image: Union[ArrayLike, Sequence[ArrayLike]],
        probs: Union[ArrayLike, Sequence[ArrayLike]],
        from_logits: bool = False,
    ) -> Union[ArrayLike, list[ArrayLike]]:
        """Arg-max labels of the refined probabilities: ``(H, W)`` / ``(B, H, W)`` int64, or a
        list of ``(H_i, W_i)`` int64 for lists."""
        q = self(image, probs, from_logits=from_logits)
        return [_argmax(item) for item in q] if isinstance(q, list) else _argmax(q)


def _argmax(q: ArrayLike) -> ArrayLike:
    """Labels of ``(C, H, W)`` / ``(B, C, H, W)`` probabilities: int64 without ``C``."""
    class_dim = q.ndim - 3
    if isinstance(q, np.ndarray):
        return q.argmax(axis=class_dim).astype(np.int64)
    return q.argmax(dim=class_dim)


class _Item(NamedTuple):
    """One call's inputs as a backend takes them: ``(B, 3, H, W) uint8`` on the device of the
    ``(B, C, H, W) float32`` probabilities, and how to give the result back."""

    image: Tensor
    probs: Tensor
    is_numpy: bool
    dtype: torch.dtype
    single: bool

    def output(self, q: Tensor) -> ArrayLike:
        """``(B, C, H, W) float32`` marginals in the caller's type, dtype and batching."""
        q = q.to(self.dtype)
        if self.single:
            q = q.squeeze(0)
        return q.numpy() if self.is_numpy else q


def _prepare(
    image: ArrayLike, probs: ArrayLike, from_logits: bool, where: tuple[str, str] = ("", "")
) -> _Item:
    """Validate and convert one call's inputs; ``where`` names them for errors in a list
    (``("images[2]", "probs[2]")``), empty for a single call."""
    names = where if where[0] else ("the image", "probs")
    image_t, probs_t, is_numpy = _as_tensors(image, probs, names)
    batched = _check_shapes(image_t, probs_t, is_numpy, names)
    if not batched:
        image_t, probs_t = image_t.unsqueeze(0), probs_t.unsqueeze(0)
    if image_t.dtype != torch.uint8:
        raise ValueError(
            f"{names[0]} must be uint8 RGB in 0..255, got {image_t.dtype}; convert a float "
            "image in [0, 1] with (image * 255).round() cast to uint8"
        )
    if not probs_t.is_floating_point():
        raise ValueError(f"{names[1]} must be a floating-point array, got {probs_t.dtype}")
    probs32 = probs_t.to(torch.float32)
    if from_logits:
        probs32 = torch.softmax(probs32, dim=1)
    _check_values(probs32, from_logits, names[1])
    return _Item(image_t.to(probs32.device), probs32, is_numpy, probs_t.dtype, not batched)


def _prepare_list(
    images: Sequence[ArrayLike], probs: Sequence[ArrayLike], from_logits: bool
) -> list[_Item]:
    """Validate and convert lists of single images and their probabilities: one item each."""
    for name, value in (("images", images), ("probs", probs)):
        if not isinstance(value, (list, tuple)):
            raise ValueError(
                f"{name} is a {type(value).__name__}: pass images and probs both as lists (or "
                "tuples) of single images, or both as arrays"
            )
    if len(images) != len(probs):
        raise ValueError(f"{len(images)} images but {len(probs)} probs: give one of each")
    items: list[_Item] = []
    for i, (image, prob) in enumerate(zip(images, probs)):
        item = _prepare(image, prob, from_logits, (f"images[{i}]", f"probs[{i}]"))
        if not item.single:
            raise ValueError(
                f"images[{i}] and probs[{i}] are a batch: a list holds single images "
                f"({'(H, W, 3)' if item.is_numpy else '(3, H, W)'} and (C, H, W))"
            )
        if items and (item.is_numpy, item.probs.device) != (
            items[0].is_numpy,
            items[0].probs.device,
        ):
            raise ValueError(
                f"probs[{i}] are {_family(item)} but probs[0] are {_family(items[0])}: "
                "every item must be of one family (numpy or torch) and on one device"
            )
        if items and item.probs.shape[1] != items[0].probs.shape[1]:
            raise ValueError(
                f"probs[{i}] have {item.probs.shape[1]} classes but probs[0] have "
                f"{items[0].probs.shape[1]}: every image needs the same classes"
            )
        items.append(item)
    return items


def _family(item: _Item) -> str:
    return "numpy arrays" if item.is_numpy else f"torch tensors on {item.probs.device}"


def _as_tensors(
    image: ArrayLike, probs: ArrayLike, names: tuple[str, str]
) -> tuple[Tensor, Tensor, bool]:
    """The inputs as tensors (numpy images made channels-first), and whether they were numpy;
    ValueError for anything else or a mix."""
    if isinstance(image, np.ndarray) and isinstance(probs, np.ndarray):
        if image.ndim not in (3, 4) or image.shape[-1] != 3:
            raise ValueError(
                f"{names[0]} (numpy) must be (H, W, 3) or (B, H, W, 3) RGB, got shape {image.shape}"
            )
        return numpy_to_tensor(image).movedim(-1, -3), numpy_to_tensor(probs), True
    if isinstance(image, Tensor) and isinstance(probs, Tensor):
        return image, probs, False
    pair = "image and probs" if names[0] == "the image" else " and ".join(names)
    raise ValueError(
        f"{pair} must both be numpy arrays or both torch tensors, got "
        f"{type(image).__name__} and {type(probs).__name__}"
    )


def _check_shapes(image: Tensor, probs: Tensor, is_numpy: bool, names: tuple[str, str]) -> bool:
    """Validate shapes; return whether the inputs are batched. ``names``: what to call the
    image and the probabilities in errors."""
    image_name, probs_name = names
    layout = "(H, W, 3) or (B, H, W, 3)" if is_numpy else "(3, H, W) or (B, 3, H, W)"
    if image.dim() not in (3, 4) or image.shape[-3] != 3:
        shape = tuple(image.movedim(-3, -1).shape) if is_numpy else tuple(image.shape)
        raise ValueError(f"{image_name} must be RGB {layout}, got shape {shape}")
    if probs.dim() != image.dim():
        raise ValueError(
            f"{probs_name} must be {'(B, C, H, W)' if image.dim() == 4 else '(C, H, W)'} to "
            f"match {image_name}, got shape {tuple(probs.shape)}"
        )
    if probs.shape[-2:] != image.shape[-2:]:
        raise ValueError(
            f"{probs_name} are {tuple(probs.shape[-2:])} (H, W) but {image_name} is "
            f"{tuple(image.shape[-2:])}: resize the probabilities to the image size first"
        )
    if image.dim() == 4 and probs.shape[0] != image.shape[0]:
        raise ValueError(f"batch sizes differ: {image.shape[0]} images, {probs.shape[0]} probs")
    if probs.shape[-3] < 2:
        raise ValueError(f"{probs_name} need at least 2 classes, got {probs.shape[-3]}")
    if probs.shape[-1] < 1 or probs.shape[-2] < 1:
        raise ValueError(f"{image_name} is empty: size {tuple(probs.shape[-2:])}")
    return image.dim() == 4


def _check_values(probs: Tensor, from_logits: bool, name: str) -> None:
    """ValueError for NaN, infinite or (unless logits) negative values in ``probs``, called
    ``name`` in the message."""
    if probs.numel() == 0:
        return
    what = name.replace("probs", "logits") if from_logits else name
    low, high = torch.aminmax(probs)  # one pass; NaN anywhere makes both NaN
    if not (torch.isfinite(low) and torch.isfinite(high)):
        raise ValueError(f"{what} contain NaN or infinite values")
    if not from_logits and low < 0:
        raise ValueError(
            f"{what} contain negative values: pass class probabilities, or logits "
            "with from_logits=True"
        )
