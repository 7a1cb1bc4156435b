"""``Segmenter``: image in, segmentation out, following the DeepLab v2 release's test protocol."""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Optional, Union

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from .crf import DenseCRF
from .data.images import DEFAULT_MAX_PIXELS, ImageInput, check_pixels, load_image
from .data.transforms import to_caffe_input
from .errors import ImageSizeError
from .interp import upsample_logits
from .msc import MultiScale

__all__ = ["Prediction", "Segmenter"]

_OUTPUT_STRIDE = 8


@dataclass
class Prediction:
    """The segmentation of one image.

    Attributes:
        labels: ``(H, W) int64`` CPU tensor of class indices, at the input image's size.
        probs: ``(C, H, W) float32`` CPU tensor of class probabilities (after the CRF if one
            is used), or None unless requested.
        class_names: the model's class names (empty if unknown).
    """

    labels: torch.Tensor
    probs: Optional[torch.Tensor]
    class_names: tuple[str, ...]

    def present_classes(self) -> list[str]:
        """Names (or indices) of the classes that occur in ``labels``."""
        found = torch.unique(self.labels).tolist()
        return [self.class_names[i] if i < len(self.class_names) else str(i) for i in found]


class Segmenter:
    """Segment images with a DeepLab v2 model as the release does at test time.

    The image (RGB) becomes the network input (BGR, mean-subtracted,
    :func:`deeplabv2.data.to_caffe_input`); the logits of the input and of the extra ``scales``
    are max-fused (:class:`deeplabv2.MultiScale`, optionally averaged with the flipped image),
    upsampled to the image size as Caffe does (:func:`deeplabv2.interp.upsample_logits`) and
    turned into probabilities; the optional dense CRF refines them with the original RGB image.

    Args:
        model: maps ``(B, 3, H, W)`` Caffe-convention input to logits at output stride 8.
        scales: extra input scales fused with 1.0 (the release's MSC: ``(0.5, 0.75)``);
            ``()`` for single-scale inference.
        flip: also run the horizontally flipped image and average.
        crf: a :class:`deeplabv2.crf.DenseCRF`, True for ``DenseCRF()``, or None.
        device: where the network runs (default: the model's device).
        dtype: ``None``/``torch.float32``, or ``torch.bfloat16``/``torch.float16`` for
            autocast mixed precision (float16 on CUDA only).
        tile_size: images with a side longer than this are segmented in overlapping tiles of
            at most this size, so memory stays bounded; None never tiles.
        tile_overlap: overlap of neighbouring tiles, in pixels (rounded up to a multiple of 8);
            default ``min(256, tile_size // 2)``. Each pixel is taken from the tile in which it
            lies furthest from a tile edge, so a network whose receptive field fits in half the
            overlap gives exactly the whole-image result; for DeepLab (whose receptive field is
            larger) the result is close but not identical.
        max_pixels: larger images are refused with :class:`~deeplabv2.errors.ImageSizeError`
            (files before they are decoded); None for no limit. Default
            :data:`~deeplabv2.data.images.DEFAULT_MAX_PIXELS` (25 megapixels).
        progress: show a progress bar over the tiles of a tiled image.

    Raises (when segmenting):
        ImageSizeError: an image smaller than the network (and its MSC scales) can take, or
            larger than ``max_pixels``.
    """

    def __init__(
        self,
        model: nn.Module,
        *,
        scales: Sequence[float] = (0.5, 0.75),
        flip: bool = False,
        crf: Union[DenseCRF, bool, None] = None,
        device: Union[str, torch.device, None] = None,
        dtype: Optional[torch.dtype] = None,
        tile_size: Optional[int] = 1025,
        tile_overlap: Optional[int] = None,
        max_pixels: Optional[int] = DEFAULT_MAX_PIXELS,
        progress: bool = False,
    ) -> None:
        if device is None:
            first = next(iter(model.parameters()), None)
            device = first.device if first is not None else torch.device("cpu")
        self.device = torch.device(device)
        if dtype not in (None, torch.float32, torch.bfloat16, torch.float16):
            raise ValueError(f"dtype must be float32, bfloat16 or float16, got {dtype}")
        if dtype == torch.float16 and self.device.type != "cuda":
            raise ValueError("float16 autocast needs a CUDA device; use torch.bfloat16 on CPU")
        self.dtype = None if dtype in (None, torch.float32) else dtype
        if max_pixels is not None and max_pixels < 1:
            raise ValueError(f"max_pixels must be positive (or None), got {max_pixels}")
        self.tile_size = tile_size
        self.tile_overlap = tile_overlap_for(tile_size, tile_overlap)
        self.max_pixels = max_pixels
        self.progress = progress
        self.model = model.to(self.device).eval()
        self.net = MultiScale(self.model, scales, flip=flip).eval()
        self.min_size = self.net.min_input_size()
        if tile_size is not None and tile_size < self.min_size + _OUTPUT_STRIDE:
            raise ValueError(
                f"tile_size {tile_size} is too small for this network and its scales: use at "
                f"least {self.min_size + _OUTPUT_STRIDE}"
            )
        self.crf = DenseCRF() if crf is True else (crf or None)
        self.class_names = tuple(getattr(model, "class_names", ()) or ())

    def __repr__(self) -> str:
        return (
            f"Segmenter(scales={self.net.scales}, flip={self.net.flip}, crf={self.crf!r}, "
            f"device={str(self.device)!r}, dtype={self.dtype}, tile_size={self.tile_size})"
        )

    def check_size(self, height: int, width: int) -> None:
        """Raise :class:`ImageSizeError` for an image this Segmenter cannot segment."""
        if min(height, width) < self.min_size:
            raise ImageSizeError(
                f"image of {width}x{height} pixels is too small: this network"
                f"{' with its MSC scales' if len(self.net.scales) > 1 else ''} needs at least "
                f"{self.min_size} pixels per side"
            )
        check_pixels(height, width, self.max_pixels)

    @torch.inference_mode()
    def probabilities(self, image: np.ndarray) -> torch.Tensor:
        """``(H, W, 3) uint8`` RGB -> network probabilities ``(C, H, W) float32`` on the device."""
        h, w = image.shape[:2]
        self.check_size(h, w)
        if self.tile_size is not None and max(h, w) > self.tile_size:
            logits = self._tiled_logits(image)
        else:
            logits = self._logits(image)
        return torch.softmax(logits.float(), dim=0)

    def _logits(self, image: np.ndarray) -> torch.Tensor:
        """Full-resolution logits ``(C, H, W)`` of one image (or tile)."""
        x = to_caffe_input(image, device=self.device).unsqueeze(0)
        autocast = (
            torch.autocast(self.device.type, dtype=self.dtype)
            if self.dtype is not None
            else contextlib.nullcontext()
        )
        with autocast:
            logits = self.net(x)
        return upsample_logits(logits.float(), image.shape[:2], factor=_OUTPUT_STRIDE)[0]

    def _tiled_logits(self, image: np.ndarray) -> torch.Tensor:
        h, w = image.shape[:2]
        rows = _tiles(h, self.tile_size, self.tile_overlap)
        cols = _tiles(w, self.tile_size, self.tile_overlap)
        out: Optional[torch.Tensor] = None
        with tqdm(
            total=len(rows) * len(cols),
            desc=f"tiles of {w}x{h}",
            unit="tile",
            leave=False,
            disable=not self.progress,
        ) as bar:
            for start_y, end_y, keep_y0, keep_y1 in rows:
                for start_x, end_x, keep_x0, keep_x1 in cols:
                    tile = np.ascontiguousarray(image[start_y:end_y, start_x:end_x])
                    logits = self._logits(tile)
                    if out is None:
                        out = logits.new_empty(logits.shape[0], h, w)
                    out[:, keep_y0:keep_y1, keep_x0:keep_x1] = logits[
                        :,
                        keep_y0 - start_y : keep_y1 - start_y,
                        keep_x0 - start_x : keep_x1 - start_x,
                    ]
                    bar.update(1)
        assert out is not None
        return out

    def predict(self, image: ImageInput, return_probs: bool = False) -> Prediction:
        """Segment one image (path, PIL, numpy or torch; see :func:`deeplabv2.data.load_image`)."""
        rgb = load_image(image, max_pixels=self.max_pixels)
        probs = self.probabilities(rgb)
        if self.crf is not None:
            probs = self.refine(rgb, probs)
        return self._prediction(probs, return_probs)

    def refine(self, image: np.ndarray, probs: torch.Tensor) -> torch.Tensor:
        """The CRF step: ``(H, W, 3) uint8`` RGB and ``(C, H, W)`` probs -> refined probs."""
        if self.crf is None:
            raise ValueError("this Segmenter has no CRF (pass crf=True or a DenseCRF)")
        return self.crf(torch.from_numpy(image).permute(2, 0, 1).to(probs.device), probs)

    def predict_batch(
        self, images: Iterable[ImageInput], return_probs: bool = False
    ) -> list[Prediction]:
        """Segment many images of any sizes; one :class:`Prediction` per image, in order."""
        return [self.predict(image, return_probs=return_probs) for image in images]

    def _prediction(self, probs: torch.Tensor, return_probs: bool) -> Prediction:
        labels = probs.argmax(0).cpu()
        return Prediction(labels, probs.cpu() if return_probs else None, self.class_names)


def tile_overlap_for(tile_size: Optional[int], tile_overlap: Optional[int]) -> int:
    """Validate tiling settings; the overlap rounded up to a multiple of 8 (default:
    ``min(256, tile_size // 2)``).

    Raises:
        ValueError: ``tile_size`` under 17 pixels, or an overlap outside ``[1, tile_size / 2]``.
    """
    if tile_size is not None and tile_size < 2 * _OUTPUT_STRIDE + 1:
        raise ValueError(f"tile_size must be at least 17 pixels, got {tile_size}")
    if tile_overlap is None:
        half = (tile_size // 2) if tile_size is not None else 256
        tile_overlap = min(256, half // _OUTPUT_STRIDE * _OUTPUT_STRIDE)
    if tile_overlap < 1 or (tile_size is not None and tile_overlap > tile_size // 2):
        raise ValueError(
            f"tile_overlap must be in [1, tile_size / 2], got {tile_overlap} for tile_size "
            f"{tile_size}"
        )
    return -(-tile_overlap // _OUTPUT_STRIDE) * _OUTPUT_STRIDE


def _tiles(length: int, size: int, overlap: int) -> list[tuple[int, int, int, int]]:
    """Tiles along one axis: ``(start, end, keep_start, keep_end)``.

    Starts are multiples of the output stride, so every tile sees the same sampling grid as the
    whole image; the last tile ends at the image edge. Consecutive tiles hand over at the middle
    of their overlap.
    """
    if length <= size:
        return [(0, length, 0, length)]
    step = (size - overlap) // _OUTPUT_STRIDE * _OUTPUT_STRIDE
    starts = list(range(0, length - size, step))
    last = -(-(length - size) // _OUTPUT_STRIDE) * _OUTPUT_STRIDE  # cover the end, 8-aligned
    if not starts or starts[-1] < last:
        starts.append(min(last, length - 1))
    ends = [min(s + size, length) for s in starts]
    tiles = []
    for i, (start, end) in enumerate(zip(starts, ends)):
        keep_start = 0 if i == 0 else (starts[i] + ends[i - 1]) // 2
        keep_end = length if i == len(starts) - 1 else (starts[i + 1] + end) // 2
        tiles.append((start, end, keep_start, keep_end))
    return tiles
