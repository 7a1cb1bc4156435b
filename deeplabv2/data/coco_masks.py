"""COCO 2014 ground truth for weakly supervised segmentation: label maps from ``instances_*.json``.

The COCO 2014 setups of weakly supervised segmentation (IRN-based methods) train and score on
label PNGs of 81 classes that COCO does not ship: 0 is the background, 1..80 the 80 thing
categories in ascending order of their COCO ids (1..90 without the ten unused ids,
:data:`~deeplabv2.data.classes.COCO_CLASSES`). This module makes them as the script that ReCAM's
README (and LPCAM's after it) tells users to run does, ReCAM's ``mscoco/annToMask.py``
(github.com/zhaozhengChen/ReCAM, commit 16e34b85e8caf4049d15c31d29033d4063cd4200):

* every image of the file gets a label map of its ``height`` x ``width`` (the images are not
  read; one without annotations is all background);
* the annotations of an image are painted in the order of the file, each over the ones before
  it (where two instances overlap, the later one's class wins);
* crowd regions (``iscrowd: 1``) are not painted: they stay background (ReCAM asks
  ``getAnnIds(..., iscrowd=False)``), and no pixel is 255;
* an instance's mask is pycocotools' ``COCO.annToMask``: polygons rasterised and merged, RLE
  (uncompressed or compressed) decoded.

``pycocotools`` is an optional dependency (``pip install "deeplabv2[coco]"``), imported when a
mask is first decoded. ``deeplabv2 coco-masks`` writes the maps as the PNGs that
:class:`~deeplabv2.data.COCO2014` reads.
"""

from __future__ import annotations

import os
from collections.abc import Generator, Sequence
from dataclasses import dataclass
from types import ModuleType
from typing import Any, Optional, Union

import numpy as np
from PIL import Image

from .._pools import run_jobs
from .coco_instances import (
    COCO_CATEGORY_IDS,
    LABEL_OF,
    CocoImage,
    CocoInstances,
    load_instances,
)

__all__ = [
    "COCO_CATEGORY_IDS",
    "CocoImage",
    "CocoInstances",
    "MaskResult",
    "PER_IMAGE_ERRORS",
    "check_image_file",
    "coco_label_maps",
    "instance_mask",
    "label_map",
    "load_instances",
    "mask_api",
]

PathLike = Union[str, os.PathLike]


#: what spoils one image only (a mask pycocotools cannot decode, a missing or differently sized
#: image file): it is reported in its :class:`MaskResult`, and the others go on
PER_IMAGE_ERRORS = (ValueError, OSError)


def mask_api() -> ModuleType:
    """``pycocotools.mask``, or an ImportError that says how to install it."""
    try:
        from pycocotools import mask
    except ImportError as error:
        raise ImportError(
            f"making COCO label maps needs pycocotools, which cannot be imported ({error}): "
            'pip install "deeplabv2[coco]" (or pip install pycocotools)'
        ) from error
    return mask


def instance_mask(segmentation: Union[list, dict], height: int, width: int) -> np.ndarray:
    """One instance's mask, as pycocotools' ``COCO.annToMask`` makes it: ``(height, width)``
    bool. ``segmentation``: polygons ``[[x1, y1, x2, y2, ...], ...]`` (merged), an
    uncompressed RLE ``{"size": [h, w], "counts": [...]}`` or a compressed one (string counts).

    Raises:
        ImportError: pycocotools is not installed.
        ValueError: pycocotools cannot decode it (e.g. RLE counts beyond the image).
    """
    mask = mask_api()
    try:
        if isinstance(segmentation, list):
            rle = mask.merge(mask.frPyObjects(segmentation, height, width))
        elif isinstance(segmentation.get("counts"), list):
            rle = mask.frPyObjects(segmentation, height, width)
        else:
            rle = segmentation
        decoded = mask.decode(rle)
    except (TypeError, ValueError, IndexError, OverflowError) as error:
        raise ValueError(f"pycocotools cannot decode it ({error})") from None
    if decoded.shape != (height, width):
        raise ValueError(f"its mask is {decoded.shape[0]}x{decoded.shape[1]}, not {height}x{width}")
    return decoded.astype(bool)


def label_map(annotations: Sequence[dict[str, Any]], height: int, width: int) -> np.ndarray:
    """The 81-class label map of one image: ``(height, width)`` uint8, 0 the background.

    ``annotations``: the image's annotation dicts in file order; each non-crowd one is painted
    with its class (1..80, :data:`COCO_CATEGORY_IDS`) over the ones before it; crowds are not
    painted (ReCAM's ``annToMask.py``).

    Raises:
        ValueError: an annotation that cannot be decoded (named by its id), or of a category
            that is not COCO's.
    """
    labels = np.zeros((height, width), dtype=np.uint8)
    for annotation in annotations:
        if annotation["iscrowd"]:
            continue
        label = LABEL_OF.get(annotation["category_id"])
        if label is None:
            raise ValueError(
                f"annotation {annotation.get('id')!r}: category {annotation['category_id']!r} "
                "is not one of COCO's 80"
            )
        try:
            labels[instance_mask(annotation["segmentation"], height, width)] = label
        except ValueError as error:
            raise ValueError(f"annotation {annotation.get('id')!r}: {error}") from None
    return labels


def check_image_file(path: PathLike, image: CocoImage) -> None:
    """Check that the image file is there and is ``image.width`` x ``image.height`` in its
    stored pixel grid (the header only; no EXIF rotation): its label map must fit it.

    Raises:
        FileNotFoundError: no such file.
        ValueError: unreadable, or another size.
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"no image file {path} (the JSON's file_name in --images)")
    try:
        with Image.open(path) as opened:
            size = opened.size
    except (OSError, SyntaxError, ValueError) as error:
        raise ValueError(f"cannot read image {path}: {error}") from None
    if size != (image.width, image.height):
        raise ValueError(
            f"{path} is {size[0]}x{size[1]} pixels but the JSON says {image.width}x{image.height}"
            " (width x height): is it the same image? (the instances file of another split?)"
        )


@dataclass
class MaskResult:
    """One image's outcome: ``index`` into ``instances.images``, its ``labels`` (``(H, W)``
    uint8) or ``error``."""

    index: int
    labels: Optional[np.ndarray] = None
    error: Optional[BaseException] = None


def _one(
    image: CocoImage,
    annotations: list[dict[str, Any]],
    image_file: Optional[str],
    max_pixels: Optional[int],
) -> np.ndarray:
    """One image's label map (in a worker process, or here)."""
    where = f"{image.file_name} (image {image.id})"
    try:
        if max_pixels is not None and image.height * image.width > max_pixels:
            raise ValueError(
                f"{image.width}x{image.height} pixels is over the limit of {max_pixels}; raise "
                "it with --max-pixels (max_pixels=) if you mean it"
            )
        if image_file is not None:
            check_image_file(image_file, image)
        return label_map(annotations, image.height, image.width)
    except FileNotFoundError as error:
        raise FileNotFoundError(f"{where}: {error}") from None
    except PER_IMAGE_ERRORS as error:
        raise ValueError(f"{where}: {error}") from None


def coco_label_maps(
    instances: CocoInstances,
    indices: Optional[Sequence[int]] = None,
    *,
    images_dir: Optional[PathLike] = None,
    workers: int = 0,
    max_pixels: Optional[int] = None,
) -> Generator[MaskResult, None, None]:
    """The label maps (:func:`label_map`) of ``instances.images[i]`` for each ``i`` of
    ``indices`` (default: all), one :class:`MaskResult` each, in the order of ``indices``.

    Args:
        instances: a file read by :func:`load_instances`.
        indices: which images.
        images_dir: if given, each image's ``file_name`` there must exist and have the JSON's
            size (:func:`check_image_file`); without it no image is read.
        workers: processes decoding one image each (0: in this process).
        max_pixels: refuse images whose JSON size is larger (their map is that many bytes).

    An image whose masks cannot be made (:data:`PER_IMAGE_ERRORS`) comes back with ``error``
    set, named; anything else is raised. Close the generator (``contextlib.closing``) to stop
    the worker processes early.
    """
    if workers < 0 or (max_pixels is not None and max_pixels < 1):
        raise ValueError(f"workers must be >= 0 and max_pixels >= 1, got {workers}, {max_pixels}")
    mask_api()  # a missing pycocotools fails here, not once per image
    chosen = range(len(instances.images)) if indices is None else list(indices)

    def job(i: int) -> tuple:
        image = instances.images[i]
        file = None if images_dir is None else os.path.join(images_dir, image.file_name)
        return image, instances.of(image), file, max_pixels

    for i, labels, error in run_jobs(
        _one, ((i, job(i)) for i in chosen), workers, PER_IMAGE_ERRORS
    ):
        yield MaskResult(i, labels=labels, error=error)
