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

import json
import os
from collections.abc import Generator, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any, Optional, Union

import numpy as np
from PIL import Image

from .._files import read_bytes
from .._pools import Workers
from .classes import COCO_CLASSES

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

#: COCO's ids of the 80 thing categories, ascending; id ``COCO_CATEGORY_IDS[i]`` is label
#: ``i + 1`` (:data:`~deeplabv2.data.classes.COCO_CLASSES` ``[i + 1]``), as in ReCAM's
#: ``category_map``.
COCO_CATEGORY_IDS: tuple[int, ...] = tuple(
    i for i in range(1, 91) if i not in (12, 26, 29, 30, 45, 66, 68, 69, 71, 83)
)
_LABEL_OF = {category: label for label, category in enumerate(COCO_CATEGORY_IDS, start=1)}

#: what spoils one image only (a mask pycocotools cannot decode, a missing or differently sized
#: image file): it is reported in its :class:`MaskResult`, and the others go on
PER_IMAGE_ERRORS = (ValueError, OSError)

_ANNOTATION_KEYS = ("id", "image_id", "category_id", "iscrowd", "segmentation")
#: problems of a file listed before the rest are counted
_SHOWN = 5


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


@dataclass(frozen=True)
class CocoImage:
    """One entry of the file's ``images``: COCO's ``id``, ``file_name``, ``height``, ``width``."""

    id: int
    file_name: str
    height: int
    width: int

    @property
    def stem(self) -> str:
        """``file_name`` without its suffix: the name of the image's label PNG, ``<stem>.png``."""
        return Path(self.file_name).stem


@dataclass
class CocoInstances:
    """A checked instances file: its ``images`` in file order and each image's annotations
    (``annotations[image.id]``, the file's dicts in file order; absent: none)."""

    path: Path
    images: list[CocoImage]
    annotations: dict[int, list[dict[str, Any]]] = field(default_factory=dict)

    def of(self, image: CocoImage) -> list[dict[str, Any]]:
        """The annotations of ``image``, in file order."""
        return self.annotations.get(image.id, [])


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _raise(path: Path, problems: list[str], fix: str) -> None:
    if problems:
        more = f" (and {len(problems) - _SHOWN} more)" if len(problems) > _SHOWN else ""
        raise ValueError(f"{path}: {'; '.join(problems[:_SHOWN])}{more}. {fix}")


def _section(path: Path, data: object, key: str) -> list:
    if not isinstance(data, dict) or not isinstance(data.get(key), list):
        raise ValueError(
            f"{path}: no {key!r} list; this is not a COCO instances file (instances_train2014."
            "json / instances_val2014.json from cocodataset.org)"
        )
    return data[key]


def _check_categories(path: Path, categories: list) -> None:
    problems = []
    for entry in categories:
        if not isinstance(entry, dict) or not _is_int(entry.get("id")):
            problems.append(f"category {entry!r} has no integer 'id'")
        elif entry["id"] not in _LABEL_OF:
            problems.append(
                f"category id {entry['id']} ({entry.get('name')!r}) is not one of COCO's 80"
            )
        elif entry.get("name") != COCO_CLASSES[_LABEL_OF[entry["id"]]]:
            expected = COCO_CLASSES[_LABEL_OF[entry["id"]]]
            problems.append(
                f"category {entry['id']} is {entry.get('name')!r}, COCO's is {expected!r}"
            )
    _raise(path, problems, "The labels are COCO 2014's 80 categories by id; give COCO's own file")


def _image(entry: object) -> Union[CocoImage, str]:
    """The image an ``images`` entry describes, or what is wrong with it."""
    if not isinstance(entry, dict):
        return f"image entry {entry!r} is not an object"
    name = entry.get("file_name")
    if not _is_int(entry.get("id")) or not isinstance(name, str):
        return f"image entry {entry!r} lacks an integer 'id' or a 'file_name'"
    if name != os.path.basename(name) or name in ("", ".", "..") or "\\" in name:
        return f"image {entry['id']}: file_name {name!r} is not a plain file name"
    height, width = entry.get("height"), entry.get("width")
    if not all(type(value) is int and value > 0 for value in (height, width)):
        return (
            f"image {entry['id']} ({name}): height {height!r} and width {width!r} must be "
            "positive integers"
        )
    return CocoImage(entry["id"], name, entry["height"], entry["width"])


def _check_images(path: Path, entries: list) -> list[CocoImage]:
    images: list[CocoImage] = []
    problems: list[str] = []
    ids: set[int] = set()
    stems: dict[str, str] = {}
    for entry in entries:
        image = _image(entry)
        if isinstance(image, str):
            problems.append(image)
        elif image.id in ids:
            problems.append(f"image id {image.id} is listed twice")
        elif image.stem in stems:
            problems.append(
                f"images {stems[image.stem]} and {image.file_name} would both get the label "
                f"{image.stem}.png"
            )
        else:
            ids.add(image.id)
            stems[image.stem] = image.file_name
            images.append(image)
    _raise(path, problems, "Give COCO's own file, or fix these entries")
    return images


def _segmentation_problem(segmentation: object, image: CocoImage) -> Optional[str]:
    """What is wrong with a (non-crowd) annotation's ``segmentation``, if anything: polygons
    (lists of at least 3 points, ``[x1, y1, x2, y2, ...]``) or an RLE of the image's size."""
    if isinstance(segmentation, list):
        if not segmentation:
            return "has no polygon"
        for polygon in segmentation:
            if not isinstance(polygon, list):
                return f"has a polygon that is a {type(polygon).__name__}, not a list"
            if len(polygon) < 6 or len(polygon) % 2:
                return f"has a polygon of {len(polygon)} coordinates (an even number, at least 6)"
        return None
    if isinstance(segmentation, dict):
        size, counts = segmentation.get("size"), segmentation.get("counts")
        if size != [image.height, image.width]:
            return f"is an RLE of size {size!r}, the image is [{image.height}, {image.width}]"
        if not isinstance(counts, (str, list)):
            return "is an RLE without 'counts' (a list or a string)"
        if isinstance(counts, list) and not all(_is_int(c) and c >= 0 for c in counts):
            return "is an RLE whose counts are not non-negative integers"
        return None
    return f"is a {type(segmentation).__name__}, neither polygons nor an RLE"


def _annotation_problem(entry: object, images: dict[int, CocoImage]) -> Optional[str]:
    if not isinstance(entry, dict):
        return f"annotation {entry!r} is not an object"
    missing = [key for key in _ANNOTATION_KEYS if key not in entry]
    if missing:
        return f"annotation {entry.get('id', entry)!r} has no {', '.join(missing)}"
    name = f"annotation {entry['id']!r}"
    if not _is_int(entry["image_id"]) or entry["image_id"] not in images:
        return f"{name} is of image {entry['image_id']!r}, which 'images' does not list"
    if not _is_int(entry["category_id"]) or entry["category_id"] not in _LABEL_OF:
        return f"{name} has category {entry['category_id']!r}, not one of COCO's 80"
    if entry["iscrowd"] not in (0, 1):
        return f"{name} has iscrowd {entry['iscrowd']!r} (0 or 1)"
    if entry["iscrowd"] == 0:
        problem = _segmentation_problem(entry["segmentation"], images[entry["image_id"]])
        if problem is not None:
            return f"{name} (image {entry['image_id']}): its segmentation {problem}"
    return None


def load_instances(path: PathLike) -> CocoInstances:
    """Read and check a COCO instances file (``instances_train2014.json``).

    Everything that would spoil labels is refused here, before any is made: entries without
    the keys the labels need, images listed twice or whose labels would share a name, file
    names with folders, categories that are not COCO's 80 (by id and name), annotations of
    unlisted images or unknown categories, and (of the instances that are painted, not the
    crowds) polygons of fewer than 3 points or an odd count, and RLEs of another size.

    Raises:
        FileNotFoundError / OSError: no such file, or unreadable.
        ValueError: not JSON, or not a COCO instances file; the first problems are named.
    """
    path = Path(path)
    try:
        data = json.loads(read_bytes(path, "COCO instances file"))
    except json.JSONDecodeError as error:
        raise ValueError(
            f"{path}: not JSON ({error}); give COCO's instances_<split>2014.json"
        ) from None
    except UnicodeDecodeError as error:
        raise ValueError(f"{path}: not a UTF-8 JSON file ({error})") from None
    categories = _section(path, data, "categories")
    entries = _section(path, data, "images")
    annotations = _section(path, data, "annotations")
    _check_categories(path, categories)
    images = _check_images(path, entries)
    by_id = {image.id: image for image in images}
    grouped: dict[int, list[dict[str, Any]]] = {}
    problems = []
    for entry in annotations:
        problem = _annotation_problem(entry, by_id)
        if problem is not None:
            problems.append(problem)
        else:
            grouped.setdefault(entry["image_id"], []).append(entry)
    _raise(path, problems, "Give COCO's own file, or fix these annotations")
    return CocoInstances(path, images, grouped)


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
        label = _LABEL_OF.get(annotation["category_id"])
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


def _result(index: int, future: Future) -> MaskResult:
    try:
        return MaskResult(index, labels=future.result())
    except PER_IMAGE_ERRORS as error:
        return MaskResult(index, error=error)


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

    if workers == 0:
        for i in chosen:
            try:
                yield MaskResult(i, labels=_one(*job(i)))
            except PER_IMAGE_ERRORS as error:
                yield MaskResult(i, error=error)
        return
    pool = Workers(workers)
    try:
        for i in chosen:
            for index, future in pool.submit(_one, *job(i), tag=i):
                yield _result(index, future)
        for index, future in pool.drain():
            yield _result(index, future)
    except BaseException:  # an error, an interrupt, or the caller closed the stream
        pool.close(abort=True)
        raise
    pool.close()
