"""Images -> the network's input convention (Caffe: BGR, 0..255, mean subtracted)."""

from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache
from typing import Any

import numpy as np
import torch

from .constants import CAFFE_MEAN_BGR

__all__ = ["CAFFE_MEAN_BGR", "CaffePreprocess", "numpy_to_tensor", "to_caffe_input"]


def numpy_to_tensor(array: np.ndarray) -> torch.Tensor:
    """A numpy array as a CPU tensor: a view where it can be, a copy where the array is not
    contiguous or is read-only (``np.asarray(PIL image)`` is; torch warns on those)."""
    array = np.ascontiguousarray(array)
    if not array.flags.writeable:
        array = array.copy()
    return torch.from_numpy(array)


def _as_chw_tensor(image: Any) -> torch.Tensor:
    """PIL / numpy (H, W, 3) / torch (3, H, W) or (B, 3, H, W) -> torch, channels first."""
    if hasattr(image, "convert") and hasattr(image, "mode"):  # PIL.Image, without importing PIL
        image = np.array(image.convert("RGB"))
    if isinstance(image, np.ndarray):
        if image.ndim != 3 or image.shape[-1] != 3:
            raise ValueError(
                f"numpy images must be (H, W, 3) RGB, got shape {image.shape}; convert "
                "grayscale or RGBA images to RGB first"
            )
        return numpy_to_tensor(image).permute(2, 0, 1)
    if isinstance(image, torch.Tensor):
        if image.dim() not in (3, 4) or image.shape[-3] != 3:
            raise ValueError(
                f"torch images must be (3, H, W) or (B, 3, H, W) RGB, got shape "
                f"{tuple(image.shape)}"
            )
        return image
    raise TypeError(
        f"expected a PIL image, a numpy (H, W, 3) array or a torch (3, H, W) / (B, 3, H, W) "
        f"tensor, got {type(image).__name__}"
    )


def to_caffe_input(
    image: Any,
    device: torch.device | str | None = None,
    mean_bgr: Sequence[float] = CAFFE_MEAN_BGR,
) -> torch.Tensor:
    """Convert an RGB image to DeepLab v2's input: BGR, 0..255, minus :data:`CAFFE_MEAN_BGR`
    (or another per-channel ``mean_bgr``, for networks trained with one).

    Args:
        image: one of
            * ``PIL.Image.Image`` (any mode; converted to RGB),
            * numpy ``(H, W, 3)`` RGB, ``uint8`` in 0..255 or floating in 0..1,
            * torch ``(3, H, W)`` or ``(B, 3, H, W)`` RGB, ``uint8`` in 0..255 or floating in 0..1
              (the torchvision convention).
        device: where to put the result (default: the input tensor's device, or CPU).

    Returns:
        ``(3, H, W)`` or ``(B, 3, H, W)`` float32 tensor, BGR order, mean subtracted: what
        :class:`deeplabv2.models.DeepLabV2` expects (add a batch dimension for a single image).

    Raises:
        ValueError: wrong shape, an unsupported dtype, or floating values outside 0..1.
    """
    rgb = _as_chw_tensor(image)
    if device is not None:
        rgb = rgb.to(device)
    if rgb.dtype == torch.uint8:
        rgb = rgb.float()
    elif rgb.is_floating_point():
        if rgb.numel() and (rgb.min() < 0 or rgb.max() > 1):
            raise ValueError(
                f"floating-point images must be in 0..1, got values in "
                f"[{rgb.min().item():.3g}, {rgb.max().item():.3g}]; pass 0..255 images as uint8"
            )
        rgb = rgb.float() * 255.0
    else:
        raise ValueError(f"images must be uint8 (0..255) or floating (0..1), got {rgb.dtype}")
    return rgb.flip(-3) - _mean_tensor(tuple(float(m) for m in mean_bgr), rgb.device)


@lru_cache(maxsize=8)
def _mean_tensor(mean_bgr: tuple[float, ...], device: torch.device) -> torch.Tensor:
    """``(3, 1, 1) float32`` mean on ``device``, made once: copying it there for every image
    would wait for the GPU each time."""
    return torch.tensor(mean_bgr, dtype=torch.float32, device=device).view(3, 1, 1)


class CaffePreprocess:
    """Transform object form of :func:`to_caffe_input`, for dataset pipelines."""

    def __init__(
        self,
        device: torch.device | str | None = None,
        mean_bgr: Sequence[float] = CAFFE_MEAN_BGR,
    ) -> None:
        self.device = device
        #: The per-channel mean (B, G, R) it subtracts.
        self.mean_bgr = tuple(float(m) for m in mean_bgr)

    def __call__(self, image: Any) -> torch.Tensor:
        return to_caffe_input(image, device=self.device, mean_bgr=self.mean_bgr)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(mean_bgr={self.mean_bgr})"
