"""``Segmenter``: images in, segmentations out, following the weights' own test protocol.

The release's protocol (the default for its weights): the image is padded at the bottom/right
with the mean pixel to 513x513 (zeros after mean subtraction), the network and its multi-scale
inputs run on the padded image, the logits (65x65) are zoomed by 8 with the corners aligned
(65 -> 513) and cropped back to the image. Weights trained by the PyTorch port run unpadded with
the port's MSC resizing. The UDA works' weights run on the image resized to 1024x512 (PIL
bicubic), their logits stretched (bilinear, corners aligned) to the image's own size. The
protocol is the model's (:func:`deeplabv2.protocol.protocol_of`); what the caller overrides is
applied with ``dataclasses.replace``, nothing else.
"""

from __future__ import annotations

import contextlib
import os
import warnings
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Optional, Union

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn

from .crf import DenseCRF
from .data.images import DEFAULT_MAX_PIXELS, ImageInput, check_pixels, load_image
from .data.transforms import numpy_to_tensor, to_caffe_input
from .errors import ImageSizeError
from .interp import resize_bilinear, upsample_logits
from .msc import MultiScale
from .profiling import Profile, stage
from .segmenter_setup import (
    check_resize_to,
    compiled,
    device_and_dtype,
    make_crf,
    protocol_with,
)
from .tiling import OUTPUT_STRIDE, slow_tiling_warning, tile_overlap_for, tiled_logits

__all__ = ["Prediction", "Segmenter", "label_dtype", "padded_side", "resized_rgb"]


def padded_side(side: int, pad_to: Optional[int]) -> int:
    """The side an image side is padded to: ``pad_to``, or the next ``8k + 1`` that holds it
    (sides over ``pad_to`` do not occur in VOC); unchanged without padding."""
    if pad_to is None:
        return side
    return max(pad_to, -(-(side - 1) // OUTPUT_STRIDE) * OUTPUT_STRIDE + 1)


def resized_rgb(image: Any, size: tuple[int, int]) -> np.ndarray:
    """``(H, W, 3) uint8`` RGB (numpy or torch) resized to ``size = (width, height)`` with PIL's
    bicubic filter, as the UDA works resize Cityscapes images: ``(height, width, 3) uint8``."""
    array = image if isinstance(image, np.ndarray) else image.cpu().numpy()
    width, height = size
    if array.shape[:2] == (height, width):
        return array
    resized = Image.fromarray(array).resize((width, height), Image.Resampling.BICUBIC)
    return np.array(resized)  # writable, unlike np.asarray of a PIL image


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
    """Segment images with a DeepLab model as its weights were evaluated.

    Each RGB image (first resized to ``resize_to`` if the protocol says so, PIL bicubic)
    becomes the network input (BGR, mean-subtracted, :func:`deeplabv2.data.to_caffe_input`),
    padded with the mean to ``pad_to`` (zeros after subtraction); the logits of the input and
    of the extra ``scales`` are max-fused (:class:`deeplabv2.MultiScale`, optionally averaged
    with the flipped image), zoomed to the padded size as Caffe does
    (:func:`deeplabv2.interp.upsample_logits`, corners aligned) and cropped to the image, or
    with ``upsampling="stretch"`` stretched straight to the image's own size (bilinear,
    corners aligned), and turned into probabilities; the optional dense CRF refines them with
    the original RGB image.

    Args:
        model: maps ``(B, 3, H, W)`` Caffe-convention input to logits at output stride 8.
        crf: a :class:`deeplabv2.crf.DenseCRF`, a preset name or a parameter file's path
            (:meth:`DenseCRF.from_spec`), True for the protocol's preset (``resnet101-voc`` or
            ``vgg16-voc``), or None (no CRF).
        crf_backend: the backend of a CRF made from ``crf=True``, a preset or a file
            (:data:`deeplabv2.crf.BACKENDS`; default ``"auto"``).
        flip: also run the horizontally flipped image and average.
        device: where the network runs (default: the model's device).
        dtype: ``None``/``torch.float32``, or ``torch.bfloat16``/``torch.float16`` for
            autocast mixed precision (float16 on CUDA only).
        tile_size: images with a side longer than this are segmented in overlapping tiles of
            at most this size (:mod:`deeplabv2.tiling`), so the network's memory stays bounded
            (the probabilities are computed tile by tile into one full-size buffer); None never
            tiles. A tile size far below ``pad_to`` (each tile is padded to it) warns: tiled
            images would take tens of times longer. Under ``resize_to`` the network input is
            the resized image, never tiled: ``tile_size`` must hold it.
        tile_overlap: overlap of neighbouring tiles, in pixels (rounded up to a multiple of 8);
            default ``min(256, tile_size // 2)``. Each pixel is taken from the tile in which it
            lies furthest from a tile edge.
        max_pixels: larger images are refused with :class:`~deeplabv2.errors.ImageSizeError`
            (files before they are decoded); None for no limit. Default
            :data:`~deeplabv2.data.images.DEFAULT_MAX_PIXELS` (25 megapixels).
        progress: show a progress bar over the tiles of a tiled image.
        exif: :meth:`predict` turns image files and PIL images as their EXIF orientation tag
            says, as a viewer shows a photo (default True: a person's own photos); the labels
            are then in the turned grid. False reads the stored pixel grid, the one datasets,
            labels and CAMs use (:func:`deeplabv2.data.load_image`): pass it when the labels
            are paired with the files (pseudo-labels, scoring against ground truth).
        compile: run the network (with its MSC scales) as a ``torch.compile``d module with
            fixed shapes: True for the default mode, or a mode name (``"reduce-overhead"``:
            CUDA graphs; ``"max-autotune"``). Needs ``pad_to`` or ``resize_to`` (every input
            the same size);
            batches are padded to the batch size, so every call has one shape. The first
            batch compiles (tens of seconds).
        **overrides: what to change in the model's test protocol
            (:class:`deeplabv2.protocol.EvalProtocol`), and nothing else changes: ``scales``
            (extra input scales fused with 1.0; ``()`` for single-scale inference), ``msc_mode``
            (``"caffe"`` or ``"pytorch"`` resizing of the scales), ``pad_to`` (pad images to
            this square size of the form ``8k + 1``, a larger image to the next such size; None
            runs each image at its own size), ``mean_bgr``, ``resize_to`` (``(width, height)``
            every image is resized to; None: at its own size), ``upsampling`` (``"zoom"`` or
            ``"stretch"``). ``scales=None``, ``msc_mode=None`` and ``upsampling=None`` mean the
            protocol's.

    The protocol is the model's weights' (``model.pretrained_info.protocol``), else its
    family's (:func:`deeplabv2.protocol.protocol_of`): the release's MSC at 513x513 for the
    release's weights, the port's for the port's.

    Raises (when segmenting):
        ImageSizeError: an image smaller than the network (and its MSC scales) can take, or
            larger than ``max_pixels``; :class:`deeplabv2.errors.ImageMemoryError` (also a
            ``MemoryError``) for a tiled image whose full-size probabilities do not fit in memory.
    """

    def __init__(
        self,
        model: nn.Module,
        *,
        crf: Union[DenseCRF, bool, str, os.PathLike, None] = None,
        crf_backend: str = "auto",
        flip: bool = False,
        device: Union[str, torch.device, None] = None,
        dtype: Optional[torch.dtype] = None,
        tile_size: Optional[int] = 1025,
        tile_overlap: Optional[int] = None,
        max_pixels: Optional[int] = DEFAULT_MAX_PIXELS,
        progress: bool = False,
        compile: Union[bool, str] = False,
        exif: bool = True,
        **overrides: Any,
    ) -> None:
        self.device, self.dtype = device_and_dtype(model, device, dtype)
        if max_pixels is not None and max_pixels < 1:
            raise ValueError(f"max_pixels must be positive (or None), got {max_pixels}")
        self.protocol = protocol_with(model, overrides, crf)
        self.tile_size = tile_size
        self.tile_overlap = tile_overlap_for(tile_size, tile_overlap)
        self.max_pixels = max_pixels
        self.progress = progress
        self.exif = exif
        self.model = model.to(self.device).eval()
        self.net = MultiScale(
            self.model, self.protocol.scales, mode=self.protocol.msc_mode, flip=flip
        ).eval()
        self.min_size = self.net.min_input_size()
        if tile_size is not None and tile_size < self.min_size + OUTPUT_STRIDE:
            raise ValueError(
                f"tile_size {tile_size} is too small for this network and its scales: use at "
                f"least {self.min_size + OUTPUT_STRIDE}"
            )
        check_resize_to(self.protocol, self.min_size, tile_size)
        slow = slow_tiling_warning(tile_size, self.tile_overlap, self.protocol.pad_to)
        if slow is not None:
            warnings.warn(slow, stacklevel=2)
        self.crf = make_crf(crf, crf_backend, self.protocol)
        self.class_names = tuple(getattr(model, "class_names", ()) or ())
        self.compiled = compile
        self._forward = compiled(self.net, compile, self.protocol)

    @property
    def pad_to(self) -> Optional[int]:
        return self.protocol.pad_to

    def __repr__(self) -> str:
        return (
            f"Segmenter(scales={self.net.scales}, msc_mode={self.net.mode!r}, "
            f"pad_to={self.pad_to}, resize_to={self.protocol.resize_to}, "
            f"upsampling={self.protocol.upsampling!r}, flip={self.net.flip}, crf={self.crf!r}, "
            f"device={str(self.device)!r}, dtype={self.dtype}, tile_size={self.tile_size}, "
            f"exif={self.exif})"
        )

    def settings(self) -> dict[str, Any]:
        """What this Segmenter does, as JSON-able values (recorded with evaluation results)."""
        return {
            "msc_mode": self.net.mode,
            "scales": list(self.net.scales),
            "pad_to": self.pad_to,
            "resize_to": None if self.protocol.resize_to is None else list(self.protocol.resize_to),
            "upsampling": self.protocol.upsampling,
            "flip": self.net.flip,
            "crf": None
            if self.crf is None
            else {**self.crf.params.as_dict(), "backend": self.crf.backend},
            "dtype": str(self.dtype or torch.float32),
            "compile": self.compiled,
        }

    # -- checks ----------------------------------------------------------------------------------

    def check_size(self, height: int, width: int) -> None:
        """Raise :class:`ImageSizeError` for an image this Segmenter cannot segment."""
        fixed = self.pad_to is not None or self.protocol.resize_to is not None
        if not fixed and min(height, width) < self.min_size:
            raise ImageSizeError(
                f"image of {width}x{height} pixels is too small: this network"
                f"{' with its MSC scales' if len(self.net.scales) > 1 else ''} needs at least "
                f"{self.min_size} pixels per side (or padding: pad_to=513)"
            )
        check_pixels(height, width, self.max_pixels)

    def tiled(self, height: int, width: int) -> bool:
        """Whether an image of this size is segmented in tiles (never a resized one: the
        resized size fits in a tile, as the constructor checks)."""
        if self.protocol.resize_to is not None:
            return False
        return self.tile_size is not None and max(height, width) > self.tile_size

    def input_size(self, height: int, width: int) -> tuple[int, int]:
        """The network input size ``(height, width)`` of an (untiled) image: resized, padded,
        or its own."""
        if self.protocol.resize_to is not None:
            width, height = self.protocol.resize_to
            return height, width
        return padded_side(height, self.pad_to), padded_side(width, self.pad_to)

    # -- the network -----------------------------------------------------------------------------

    def _autocast(self) -> contextlib.AbstractContextManager:
        if self.dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=self.dtype)

    def _network_input(
        self, images: Sequence[Any], size: tuple[int, int], profile: Optional[Profile] = None
    ) -> torch.Tensor:
        """RGB ``(H, W, 3)`` uint8 images (numpy or, e.g. pinned, torch) -> ``(B, 3, *size)``
        Caffe input on the device, resized (``resize_to``) or padded with the mean (zero after
        subtraction)."""
        if self.protocol.resize_to is not None:
            with stage(profile, "preprocessing"):  # PIL's bicubic, on the host
                images = [resized_rgb(image, self.protocol.resize_to) for image in images]
        with stage(profile, "copy to device"):
            hosts = [numpy_to_tensor(i) if isinstance(i, np.ndarray) else i for i in images]
            rgbs = [rgb.to(self.device, non_blocking=True) for rgb in hosts]
        with stage(profile, "preprocessing"):
            batch = []
            for rgb in rgbs:
                x = to_caffe_input(rgb.permute(2, 0, 1), mean_bgr=self.protocol.mean_bgr)
                pad_h, pad_w = size[0] - x.shape[-2], size[1] - x.shape[-1]
                batch.append(F.pad(x, (0, pad_w, 0, pad_h)) if pad_h or pad_w else x)
            return torch.stack(batch)

    @torch.inference_mode()
    def _logits_batch(
        self, images: Sequence[Any], batch_size: int = 1, profile: Optional[Profile] = None
    ) -> list[torch.Tensor]:
        """Full-resolution logits ``(C, H_i, W_i)`` of images that share one input size; a
        compiled network gets ``batch_size`` inputs (zeros after the images), one shape."""
        sizes = [tuple(image.shape[:2]) for image in images]
        size = self.input_size(*sizes[0])
        x = self._network_input(images, size, profile)
        if self.compiled and len(images) < batch_size:
            x = F.pad(x, (0, 0, 0, 0, 0, 0, 0, batch_size - len(images)))
        with stage(profile, "network"), self._autocast():
            logits = self._forward(x)[: len(images)]
        with stage(profile, "upsampling + softmax"):
            if self.protocol.upsampling == "stretch":  # each to its image's own size
                return [
                    resize_bilinear(logits[i : i + 1].float(), s)[0] for i, s in enumerate(sizes)
                ]
            full = upsample_logits(logits.float(), size, factor=OUTPUT_STRIDE)
        return [full[i, :, :h, :w] for i, (h, w) in enumerate(sizes)]

    def probabilities_batch(
        self, images: Sequence[Any], batch_size: int = 1, *, profile: Optional[Profile] = None
    ) -> list[torch.Tensor]:
        """Network probabilities ``(C, H, W) float32`` (on the device) of each RGB image.

        Images that share a network input size (every image under ``resize_to``, every image
        up to ``pad_to`` under padding, equal sizes without) run ``batch_size`` at a time;
        tiled images one by one. The results equal those of ``batch_size=1`` up to
        floating-point reduction order. ``profile`` times the stages (:mod:`deeplabv2.profiling`).
        """
        if batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {batch_size}")
        out: list[Optional[torch.Tensor]] = [None] * len(images)
        groups: dict[tuple[int, int], list[int]] = defaultdict(list)
        for index, image in enumerate(images):
            h, w = image.shape[:2]
            self.check_size(h, w)
            if self.tiled(h, w):
                assert self.tile_size is not None  # tiled() says so
                with torch.inference_mode():  # one full-size buffer, softmax tile by tile
                    out[index] = tiled_logits(
                        np.asarray(image),
                        lambda tile: self._logits_batch([tile])[0],
                        self.tile_size,
                        self.tile_overlap,
                        softmax=True,
                        progress=self.progress,
                    )
            else:
                groups[self.input_size(h, w)].append(index)
        for members in groups.values():
            for start in range(0, len(members), batch_size):
                chunk = members[start : start + batch_size]
                logits = self._logits_batch([images[i] for i in chunk], batch_size, profile)
                with stage(profile, "upsampling + softmax"):
                    for index, value in zip(chunk, logits):
                        out[index] = torch.softmax(value, dim=0)
        return out  # type: ignore[return-value]

    def probabilities(self, image: np.ndarray) -> torch.Tensor:
        """``(H, W, 3) uint8`` RGB -> network probabilities ``(C, H, W) float32`` on the device."""
        return self.probabilities_batch([image])[0]

    # -- the CRF and the results -----------------------------------------------------------------

    def refine(self, image: np.ndarray, probs: torch.Tensor) -> torch.Tensor:
        """The CRF step: ``(H, W, 3) uint8`` RGB and ``(C, H, W)`` probs -> refined probs."""
        return self.refine_batch([image], [probs])[0]

    def refine_batch(
        self,
        images: Sequence[Any],
        probs: Sequence[torch.Tensor],
        *,
        profile: Optional[Profile] = None,
    ) -> list[torch.Tensor]:
        """The CRF of images of any sizes in one call (one lattice for all on a GPU): RGB
        ``(H_i, W_i, 3) uint8`` (numpy or torch) and ``(C, H_i, W_i)`` probs on one device ->
        refined ``(C, H_i, W_i)`` probs there."""
        if self.crf is None:
            raise ValueError("this Segmenter has no CRF (pass crf=True or a DenseCRF)")
        with stage(profile, "CRF"):
            rgbs = [
                torch.as_tensor(image).permute(2, 0, 1).to(p.device, non_blocking=True)
                for image, p in zip(images, probs)
            ]
            return self.crf(rgbs, list(probs))

    def label_maps(
        self, probs: Sequence[torch.Tensor], *, profile: Optional[Profile] = None
    ) -> list[torch.Tensor]:
        """Arg-max labels ``(H, W)`` of ``(C, H, W)`` probs, where they are: ``uint8`` (``int64``
        for more than 256 classes)."""
        with stage(profile, "argmax"):
            return [p.argmax(0).to(label_dtype(p.shape[0])) for p in probs]

    def predict(self, image: ImageInput, return_probs: bool = False) -> Prediction:
        """Segment one image (path, PIL, numpy or torch; see :func:`deeplabv2.data.load_image`),
        turned by its EXIF orientation tag unless ``exif=False``."""
        return self.predict_batch([image], return_probs=return_probs)[0]

    def predict_batch(
        self, images: Iterable[ImageInput], return_probs: bool = False, batch_size: int = 1
    ) -> list[Prediction]:
        """Segment many images of any sizes (``batch_size`` at a time through the network);
        one :class:`Prediction` per image, in order."""
        rgbs = [load_image(image, exif=self.exif, max_pixels=self.max_pixels) for image in images]
        probs = self.probabilities_batch(rgbs, batch_size)
        if self.crf is not None:
            probs = [
                refined
                for start in range(0, len(probs), batch_size)
                for refined in self.refine_batch(
                    rgbs[start : start + batch_size], probs[start : start + batch_size]
                )
            ]
        return [self.prediction(p, return_probs) for p in probs]

    def prediction(self, probs: torch.Tensor, return_probs: bool = False) -> Prediction:
        """A :class:`Prediction` from ``(C, H, W)`` probabilities on any device."""
        labels = probs.argmax(0).cpu()
        return Prediction(labels, probs.float().cpu() if return_probs else None, self.class_names)


def label_dtype(classes: int) -> torch.dtype:
    """The dtype of label maps: ``uint8`` up to 256 classes, else ``int64``."""
    return torch.uint8 if classes <= 256 else torch.int64
