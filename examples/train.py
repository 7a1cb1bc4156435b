"""Train DeepLab v2 with the release's recipe (optional example, not part of the API).

One CPU, one GPU or many (``torchrun``, DistributedDataParallel: NCCL on GPUs, gloo on CPUs):

    python examples/train.py --config examples/configs/voc12.json --data VOCdevkit/VOC2012 \
        --out runs/voc12
    torchrun --nproc_per_node 4 examples/train.py --config examples/configs/voc12.json ...

The recipe (DeepLab v2 release: ``train.prototxt``, ``solver.prototxt`` and the
``ImageSegData`` layer; see ``docs/training.md`` for the table and the sources): SGD with
momentum 0.9 and weight decay 5e-4, poly learning rate ``lr * (1 - it / max_iter) ** 0.9`` from
2.5e-4, x10 for the head's weights and x20 for its biases (no decay on them), 20,000 iterations
of 10 images, each image scaled by a factor drawn from {0.5, 0.75, 1, 1.25, 1.5}, padded with
the mean (labels with 255) and cropped to 321x321 at random, mirrored with probability 1/2;
frozen BatchNorm; the MSC loss of the release (``loss: "caffe"``): the cross-entropies of the
fused logits and of the 1.0 branch against the labels subsampled by 8 (``label[::8, ::8]``),
of the 0.75 branch upsampled to the 1.0 size against the same labels, and of the 0.5 branch
against ``label[::16, ::16]``, each averaged over the labelled pixels of an image, summed, and
averaged over the images (Caffe's batch of 1 with ``iter_size`` 10). ``loss: "nearest"`` is the
PyTorch port's variant (labels resized by nearest neighbour to every branch, averaged over the
batch's pixels).

Datasets (``dataset`` in the config, :func:`deeplabv2.data.open_dataset`): ``voc`` (VOC layout
or the release's list files), ``coco`` (MS-COCO 2014, 81 classes, as weakly supervised
segmentation uses it), ``folder`` (``images/`` + ``labels/`` + a list file: pseudo-labels written
by ``deeplabv2 predict`` are valid), ``cocostuff164k``, ``cocostuff10k``, ``cityscapes``,
``gta5``, ``synthia`` (``class_names``: ``cityscapes`` or ``cityscapes16``, SYNTHIA's 16).
``label_dir`` takes the training split's labels from another folder (pseudo-labels; ``voc``,
``coco`` and ``folder``); validation keeps the dataset's own labels.
Initialisations (``init``): a registry name of the network (``coco-init``, ``imagenet``,
``torchvision-imagenet``...), a local file, or null.

Domain adaptation's source-only baseline (``examples/configs/gta5_source_only.json``,
AdaptSegNet's settings): ``model_args`` (the network's variant: ``aux_head``,
``head_branches``), ``resize`` (every training image to one size, PIL bicubic, instead of the
random scaling, cropping and mirroring), ``loss: "upsampled"`` (the logits upsampled to the
labels) with ``aux_loss_weight`` (the auxiliary head's term), ``head_lr_mult`` /
``head_bias_lr_mult`` / ``head_bias_decay`` (the heads' learning rates and decay),
``stop_iter`` (an early stop; the poly schedule still runs over ``max_iter``), ``val_dataset``
(validation on another dataset, under ``--val-data``) and ``protocol`` (the final weights' test
protocol settings).

Weakly supervised segmentation (``supervision: "weak"``: the training labels are pseudo-labels):
starting from weights that saw pixel labels (their lineage, e.g. ``coco-init``: MS-COCO pixel
labels) warns, and the warning is recorded in the final weights (``pretrained_info.warning``,
kept in the safetensors header). Every run appends its own stage to the weights' lineage
(``"VOC 2012 trainaug (pseudo-labels, weak supervision)"``), which ``deeplabv2 eval`` checks
before scoring a split. ``class_weights`` weighs the cross-entropy by class: ``"median_frequency"``
(from the training labels), a list of ``num_classes`` numbers, or a JSON file of one.
``sources`` maps config keys to where their values come from (see ``docs/training.md``).

Every ``checkpoint_every`` iterations ``<out>/checkpoint.safetensors`` (model) and
``<out>/resume.safetensors`` (model, optimizer and RNG tensors; iteration, optimizer settings,
Python RNG and config as JSON in its metadata) are written atomically by rank 0; ``--resume``
continues bit-exactly from the latter, which is read without any pickle. A ``checkpoint.pt``
(the pickle of older versions) is refused unless ``--convert-checkpoint`` is given, and even
then it is read with ``torch.load(weights_only=True)`` (tensors and plain containers only). A
non-finite loss or gradient stops the run with a message naming the iteration and the last good
checkpoint (``skip_nonfinite`` skips such steps instead, prints a summary and fails the run if
every step or the last one was skipped); no file with non-finite weights is ever written. The
final model is ``<out>/final.safetensors`` (with its class names and test protocol), loadable
with the network's builder. Validation (every ``val_every`` iterations and at the end) is
``deeplabv2.evaluate.evaluate`` with the release's protocol, sharded across ranks. Losses (per
branch), learning rate and validation mIoU go to ``<out>/log.jsonl`` and, when ``tensorboard``
is installed, to ``<out>/tensorboard``; ``metrics.json`` and ``log.jsonl`` are strict JSON
(``null`` for a non-finite number).

Under ``torchrun`` the ranks exchange an error flag where they would wait for each other: when
one rank fails (its data, its loss, a file it writes), every rank stops there, the error is
printed once (by the lowest failed rank) and every process exits non-zero; the process group has
a bounded timeout (``--dist-timeout``) as a last resort.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import hashlib
import inspect
import json
import math
import os
import random
import sys
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, Optional

import numpy as np
import torch
import torch.distributed as dist
import torch.nn.functional as F
from PIL import Image
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file
from torch import nn
from tqdm import tqdm

from deeplabv2 import MultiScale, PretrainedInfo, Segmenter, atomic_write
from deeplabv2.data import CAFFE_MEAN_BGR, DATASETS, open_dataset
from deeplabv2.data.classes import resolve_class_names
from deeplabv2.distributed import Ranks, start, stop
from deeplabv2.errors import DatasetError, DeepLabV2Error
from deeplabv2.evaluate import evaluate
from deeplabv2.interp import resize_bilinear
from deeplabv2.models import DeepLabV2, get_model, list_models, save_weights
from deeplabv2.models.deeplab_resnet import Levels
from deeplabv2.msc import MultiScaleOutput
from deeplabv2.protocol import (
    PIXEL_LABELS,
    RELEASE_PROTOCOL,
    EvalProtocol,
    pixel_label_stages,
)

LOSSES = ("caffe", "nearest", "upsampled")
SUPERVISION = ("full", "weak")  # the labels of the training split: pixel labels or pseudo-labels
CLASS_WEIGHTS = ("median_frequency",)  # computed ones; else a list of numbers or a JSON file
RESUME_FILE = "resume.safetensors"  # what --resume reads: no pickle
RESUME_FORMAT = "deeplabv2-train-resume/1"
LEGACY_CHECKPOINT = "checkpoint.pt"  # the pickle of older versions (--convert-checkpoint)
DIST_TIMEOUT_S = 600.0  # the process group's timeout: a collective waits at most this long


class ConfigError(ValueError):
    """A training config that cannot be used: unreadable, not a JSON object, unknown keys, or a
    value of the wrong type or out of range."""


class CheckpointError(ValueError):
    """Nothing (usable) to resume from: no resume file, an older pickle, a foreign file."""


class NonFiniteLossError(RuntimeError):
    """The loss or a gradient became NaN or infinite."""


class PeerFailure(RuntimeError):
    """Another rank failed; that rank prints its error, this one stops too."""

    def __init__(self, failed: Sequence[int]) -> None:
        self.failed = list(failed)
        super().__init__(
            f"rank {', '.join(map(str, self.failed))} failed (its error is printed by that rank)"
        )


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _is_list(value: Any, kind: type) -> bool:
    """A list of strings (``str``), integers (``int``) or finite numbers (``float``)."""
    if not isinstance(value, list):
        return False
    if kind is str:
        return all(isinstance(v, str) for v in value)
    if kind is int:
        return all(_is_int(v) for v in value)
    return all(_is_number(v) and math.isfinite(v) for v in value)


@dataclass
class Config:
    """Training settings; a JSON config file sets any of them."""

    model: str = "deeplab_v2_resnet101"
    dataset: str = "voc"
    split: str = "trainaug"
    val_split: str = "val"
    num_classes: int = 21
    class_names: Optional[Any] = "voc"  # "voc", "cocostuff", a file, a list, or null
    ignore_index: int = 255
    mean_bgr: list[float] = field(default_factory=lambda: list(CAFFE_MEAN_BGR))
    init: Optional[str] = "coco-init"  # registry name of the network, a file, or null
    blocks: list[int] = field(default_factory=lambda: [3, 4, 23, 3])  # ResNet only (tests)
    lr: float = 2.5e-4
    momentum: float = 0.9
    weight_decay: float = 5e-4
    power: float = 0.9
    max_iter: int = 20000
    batch_size: int = 10  # per step, over all ranks and accumulation steps
    accumulate: int = 1
    crop_size: Optional[int] = 321  # null with resize
    scale_factors: list[float] = field(default_factory=lambda: [0.5, 0.75, 1.0, 1.25, 1.5])
    flip: bool = True
    msc: bool = True
    loss: str = "caffe"  # "caffe" (the release), "nearest" (the PyTorch port) or "upsampled"
    amp: bool = False
    seed: int = 0
    checkpoint_every: int = 1000
    val_every: int = 2000
    val_limit: Optional[int] = None
    skip_nonfinite: bool = False
    supervision: str = "full"  # "weak": the training labels are pseudo-labels (WSSS)
    label_dir: Optional[str] = None  # labels of the training split from this folder
    class_weights: Optional[Any] = None  # "median_frequency", a list, a JSON file, or null
    sources: dict[str, str] = field(default_factory=dict)  # key -> where its value comes from
    # the domain adaptation works' settings (AdaptSegNet; docs/training.md)
    model_args: dict[str, Any] = field(default_factory=dict)  # e.g. {"aux_head": true}
    resize: Optional[list[int]] = None  # [width, height]: every training image, no crop
    aux_loss_weight: float = 0.0  # the auxiliary head's cross-entropy (loss "upsampled")
    head_lr_mult: float = 10.0  # the heads' weights: lr x this
    head_bias_lr_mult: float = 20.0  # the heads' biases: lr x this
    head_bias_decay: bool = False  # weight decay on the heads' biases
    stop_iter: Optional[int] = None  # end here (the poly schedule still runs to max_iter)
    val_dataset: Optional[str] = None  # validation on another dataset (null: dataset's)
    protocol: Optional[dict[str, Any]] = None  # the final weights' test protocol (overrides)

    def __post_init__(self) -> None:
        """Refuse values of the wrong type or out of range (:class:`ConfigError`)."""

        def fail(name: str, rule: str) -> None:
            raise ConfigError(f"{name} must be {rule}, got {getattr(self, name)!r}")

        if self.model not in list_models():
            raise ConfigError(f"model must be one of {list_models()}, got {self.model!r}")
        if self.dataset not in DATASETS:
            raise ConfigError(f"dataset must be one of {DATASETS}, got {self.dataset!r}")
        if self.loss not in LOSSES:
            fail("loss", f"one of {LOSSES}")
        if self.val_dataset is not None and self.val_dataset not in DATASETS:
            fail("val_dataset", f"one of {DATASETS} or null (the training dataset)")
        if self.supervision not in SUPERVISION:
            fail("supervision", f"one of {SUPERVISION}")
        if self.label_dir is not None and not (isinstance(self.label_dir, str) and self.label_dir):
            fail("label_dir", "a folder of label PNGs or null")
        self._check_class_weights()
        self._check_sources()
        for name in ("split", "val_split"):
            if not isinstance(getattr(self, name), str) or not getattr(self, name):
                fail(name, "a split name or list file")
        if self.init is not None and not isinstance(self.init, str):
            fail("init", "a registry name, a file or null")
        names = self.class_names
        if not (names is None or isinstance(names, str) or _is_list(names, str)):
            fail("class_names", '"voc", "cocostuff", a file, a list of names or null')
        if not (_is_list(self.mean_bgr, float) and len(self.mean_bgr) == 3):
            raise ConfigError(f"mean_bgr needs 3 values (B, G, R), got {self.mean_bgr}")
        if not (_is_list(self.blocks, int) and len(self.blocks) == 4 and min(self.blocks) >= 1):
            fail("blocks", "4 block counts >= 1")
        factors = self.scale_factors
        if not (_is_list(factors, float) and factors and all(0 < v <= 4 for v in factors)):
            fail("scale_factors", "a non-empty list of factors in (0, 4]")
        integers = {"num_classes": 1, "max_iter": 1, "batch_size": 1, "accumulate": 1,
                    "seed": 0, "checkpoint_every": 1, "val_every": 1}  # fmt: skip
        for name, low in integers.items():  # the lowest value of each
            if not (_is_int(getattr(self, name)) and getattr(self, name) >= low):
                fail(name, f"an integer >= {low}")
        if self.val_limit is not None and not (_is_int(self.val_limit) and self.val_limit >= 1):
            fail("val_limit", "an integer >= 1 or null")
        if not _is_int(self.ignore_index) or 0 <= self.ignore_index < self.num_classes:
            fail("ignore_index", f"an integer that is not a class index (>= {self.num_classes})")
        if self.batch_size % self.accumulate:
            raise ConfigError(
                f"batch_size {self.batch_size} is not divisible by accumulate {self.accumulate}"
            )
        # numbers: "(low, high]" or "[low, high]"
        numbers = {"lr": (0.0, 1.0, "("), "momentum": (0.0, 0.999, "["),
                   "weight_decay": (0.0, 0.1, "["), "power": (0.0, 10.0, "[")}  # fmt: skip
        for name, (low, high, bracket) in numbers.items():
            value = getattr(self, name)
            if not (_is_number(value) and math.isfinite(value) and value <= high) or (
                value < low if bracket == "[" else value <= low
            ):
                fail(name, f"a number in {bracket}{low:g}, {high:g}]")
        for name in ("flip", "msc", "amp", "skip_nonfinite", "head_bias_decay"):
            if not isinstance(getattr(self, name), bool):
                fail(name, "true or false")
        self._check_adaptation()

    def _check_adaptation(self) -> None:
        """The keys of the domain adaptation works' recipe (AdaptSegNet's): resizing instead of
        the release's augmentation, the upsampled loss with an auxiliary head, the heads'
        learning rates, an early stop, the network's variant and the test protocol."""

        def fail(name: str, rule: str) -> None:
            raise ConfigError(f"{name} must be {rule}, got {getattr(self, name)!r}")

        if self.stop_iter is not None and not (
            _is_int(self.stop_iter) and 1 <= self.stop_iter <= self.max_iter
        ):
            fail("stop_iter", f"an integer in [1, max_iter = {self.max_iter}] or null")
        for name in ("head_lr_mult", "head_bias_lr_mult"):
            value = getattr(self, name)
            if not (_is_number(value) and math.isfinite(value) and 0 < value <= 100):
                fail(name, "a number in (0, 100]")
        self._check_resize()
        self._check_model_args()
        weight = self.aux_loss_weight
        if not (_is_number(weight) and math.isfinite(weight) and 0 <= weight <= 10):
            fail("aux_loss_weight", "a number in [0, 10]")
        if self.loss == "upsampled" and self.msc:
            raise ConfigError(
                'loss "upsampled" trains the network at one scale: set "msc": false (MSC goes '
                'with loss "caffe" or "nearest")'
            )
        if weight > 0 and not (self.loss == "upsampled" and self.model_args.get("aux_head")):
            raise ConfigError(
                f"aux_loss_weight {weight:g} weighs the auxiliary head's loss: it needs "
                '"loss": "upsampled" and "model_args": {"aux_head": true} (or set it to 0)'
            )
        if self.protocol is not None:
            try:
                if not isinstance(self.protocol, dict) or "mean_bgr" in self.protocol:
                    raise ValueError("the protocol's mean is the config's mean_bgr")
                EvalProtocol.from_dict({**RELEASE_PROTOCOL.as_dict(), **self.protocol})
            except (TypeError, ValueError) as error:
                raise ConfigError(
                    f"protocol must be null or a JSON object of test protocol settings "
                    f'({{"scales": [], "pad_to": null, ...}}: {error}), got {self.protocol!r}'
                ) from None

    def _check_resize(self) -> None:
        """``resize`` ``[width, height]`` replaces the release's scaling, padding, cropping and
        mirroring, which must then be off (``crop_size`` null, ``scale_factors`` [1.0],
        ``flip`` false); ``crop_size`` null goes with ``resize`` only."""
        size = self.resize
        if size is None:
            if not (_is_int(self.crop_size) and self.crop_size >= 1):
                raise ConfigError(
                    f"crop_size must be an integer >= 1 (null only with resize), got "
                    f"{self.crop_size!r}"
                )
            return
        if not (_is_list(size, int) and len(size) == 2 and min(size) >= 1):
            raise ConfigError(f"resize must be [width, height] (2 integers >= 1), got {size!r}")
        kept = {"crop_size": None, "scale_factors": [1.0], "flip": False}
        clash = {k: getattr(self, k) for k, v in kept.items() if getattr(self, k) != v}
        if clash:
            raise ConfigError(
                f"resize {size} replaces the random scaling, cropping and mirroring, but the "
                f"config sets {clash}: set {json.dumps({k: kept[k] for k in clash})}"
            )
        if self.loss == "caffe" and any((side - 1) % 8 for side in size):
            raise ConfigError(
                f'loss "caffe" subsamples the labels by 8: resize {size} needs sides of the '
                'form 8k + 1 (e.g. [513, 257]); or use loss "upsampled"'
            )

    def _check_model_args(self) -> None:
        """``model_args`` go to the network's class (e.g. ``{"aux_head": true,
        "head_branches": 2}``): checked by building it on the meta device."""
        args = self.model_args
        if not (isinstance(args, dict) and all(isinstance(k, str) for k in args)):
            raise ConfigError(f"model_args must be a JSON object of arguments, got {args!r}")
        own = sorted(set(args) & {"num_classes", "blocks", "pretrained"})
        if own:
            raise ConfigError(f"model_args: {own} have their own config keys; set those")
        if not args:
            return
        try:
            with torch.device("meta"):
                network(self, pretrained=None)
        except (TypeError, ValueError) as error:
            raise ConfigError(f"model_args {args} do not fit {self.model}: {error}") from None

    def _check_class_weights(self) -> None:
        value = self.class_weights
        if value is None or value in CLASS_WEIGHTS:
            return
        if isinstance(value, str) and value.endswith(".json"):
            return  # read (and checked) when the run starts
        if not (_is_list(value, float) and len(value) == self.num_classes and min(value) >= 0):
            raise ConfigError(
                f"class_weights must be null, one of {CLASS_WEIGHTS}, a JSON file (.json) or "
                f"{self.num_classes} numbers >= 0 (one per class), got {value!r}"
            )

    def _check_sources(self) -> None:
        """``sources`` maps config keys (or ``"recipe"``) to where their values come from."""
        if not (isinstance(self.sources, dict) and all(
            isinstance(k, str) and isinstance(v, str) for k, v in self.sources.items()
        )):  # fmt: skip
            raise ConfigError(f"sources must map keys to texts, got {self.sources!r}")
        unknown = set(self.sources) - {f.name for f in fields(self)} - {"recipe"}
        if unknown:
            raise ConfigError(
                f"sources names unknown config keys {sorted(unknown)} (a source is given for a "
                "config key, or for the whole 'recipe')"
            )

    @classmethod
    def load(cls, path: Optional[str], overrides: dict) -> Config:
        """The settings of the JSON file ``path`` (if any) with ``overrides`` (None: unset).

        Raises:
            ConfigError: an unreadable file, invalid JSON, not a JSON object, unknown keys, or
                values of the wrong type or out of range.
        """
        values: Any = {}
        if path:
            try:
                text = Path(path).read_text(encoding="utf-8")
            except (OSError, UnicodeDecodeError) as error:
                raise ConfigError(f"cannot read the config {path}: {error}") from None
            try:
                values = json.loads(text)
            except json.JSONDecodeError as error:
                raise ConfigError(f"{path}: not valid JSON ({error})") from None
            if not isinstance(values, dict):
                raise ConfigError(
                    f'{path}: a config is a JSON object of settings ({{"lr": 0.00025, ...}}), '
                    f"got a JSON {type(values).__name__}"
                )
        values.update({k: v for k, v in overrides.items() if v is not None})
        known = {f.name for f in fields(cls)}
        unknown = set(values) - known
        if unknown:
            raise ConfigError(f"unknown config keys {sorted(unknown)}; known: {sorted(known)}")
        try:
            return cls(**values)
        except ConfigError as error:
            raise ConfigError(f"{path}: {error}" if path else str(error)) from None

    @property
    def final_iter(self) -> int:
        """The run's last iteration: ``stop_iter`` (an early stop, as AdaptSegNet's
        ``--num-steps-stop``), else ``max_iter``."""
        return self.max_iter if self.stop_iter is None else self.stop_iter

    def names(self) -> tuple[str, ...]:
        """The class names (empty if unknown); their count must be ``num_classes``."""
        names = self.class_names
        if names is None:
            return ()
        names = tuple(names) if isinstance(names, list) else resolve_class_names(names)
        if len(names) != self.num_classes:
            raise ValueError(f"{len(names)} class names for num_classes={self.num_classes}")
        return names


# -- data -----------------------------------------------------------------------------------------


def dataset(
    config: Config, root: str, split: str, limit: Optional[int] = None, training: bool = False
):
    """The ``(image, label, name)`` dataset the config names; the training split's labels come
    from ``label_dir`` when it is set (pseudo-labels), validation keeps the dataset's own and
    reads ``val_dataset`` when it is set (a domain adaptation's target)."""
    kind = config.dataset if training else config.val_dataset or config.dataset
    data = open_dataset(
        kind,
        root,
        split,
        class_names=config.names(),
        limit=limit,
        label_dir=config.label_dir if training else None,
    )
    if data.class_names and len(data.class_names) != config.num_classes:  # cityscapes13
        raise ValueError(
            f"the {kind} dataset's labels hold {len(data.class_names)} classes, not "
            f"num_classes={config.num_classes}: its class set {config.class_names!r} is scored "
            f"within {len(data.class_names)} classes; train with those"
        )
    return data


def class_pixel_counts(base: Any, num_classes: int, ignore_index: int) -> tuple[np.ndarray, ...]:
    """Per class: its labelled pixels, and the labelled pixels of the images it appears in
    (``(num_classes,) int64`` each), over the training split's labels as they are on disk."""
    pixels = np.zeros(num_classes, np.int64)
    present_in = np.zeros(num_classes, np.int64)
    for _, _, label_path in base.items:
        label = np.asarray(base.label(label_path)).reshape(-1)
        label = label[label != ignore_index]
        if label.size and (label.min() < 0 or label.max() >= num_classes):
            raise DatasetError(
                f"{label_path}: label values outside 0..{num_classes - 1} and {ignore_index}; "
                "fix the labels or num_classes before computing class weights"
            )
        counts = np.bincount(label, minlength=num_classes)
        pixels += counts
        present_in[counts > 0] += label.size
    return pixels, present_in


def median_frequency(pixels: np.ndarray, present_in: np.ndarray) -> np.ndarray:
    """Median-frequency balancing (Eigen & Fergus, ICCV 2015; SegNet): ``freq_c = pixels_c /
    present_in_c`` and ``w_c = median(freq) / freq_c`` over the classes that appear;
    0 for a class that never appears (it is never a target, so its weight is never used)."""
    seen = pixels > 0
    if not seen.any():
        raise ConfigError("class_weights: the training labels hold no labelled pixel")
    freq = np.zeros(len(pixels), np.float64)
    freq[seen] = pixels[seen] / present_in[seen]
    weights = np.zeros(len(pixels), np.float64)
    weights[seen] = np.median(freq[seen]) / freq[seen]
    return weights


def class_weights(config: Config, base: Any) -> Optional[torch.Tensor]:
    """The cross-entropy's class weights the config names (None: unweighted)."""
    value = config.class_weights
    if value is None:
        return None
    if value == "median_frequency":
        counts = class_pixel_counts(base, config.num_classes, config.ignore_index)
        value = median_frequency(*counts).tolist()
    elif isinstance(value, str):
        try:
            value = json.loads(Path(value).read_text(encoding="utf-8"))
        except (OSError, ValueError) as error:
            raise ConfigError(f"class_weights: cannot read {value} ({error})") from None
        if not (_is_list(value, float) and len(value) == config.num_classes and min(value) >= 0):
            raise ConfigError(
                f"class_weights: {config.class_weights} must hold a JSON list of "
                f"{config.num_classes} numbers >= 0"
            )
    return torch.tensor(value, dtype=torch.float32)


class TrainSet(torch.utils.data.Dataset):
    """Augmented ``(input, label)`` pairs as the release's ``ImageSegData`` makes them;
    ``dataset[(index, seed)]`` is deterministic in ``seed``.

    A scale factor drawn from ``scale_factors`` resizes the image (bilinear) and the label
    (nearest) to ``int(side * factor)``; both are padded at the bottom/right to the crop size
    (the image with the mean, the label with ``ignore_index``), cropped at a random place and
    mirrored with probability 1/2; then the mean is subtracted (BGR).

    With ``resize`` ``[width, height]`` (AdaptSegNet's ``GTA5DataSet``) every image is resized
    to that size instead (PIL bicubic; labels PIL nearest), neither scaled at random, cropped
    nor mirrored.
    """

    def __init__(self, base: Any, config: Config) -> None:
        self.base, self.config = base, config
        self.mean = torch.tensor(config.mean_bgr, dtype=torch.float32).view(3, 1, 1)

    def __len__(self) -> int:
        return len(self.base)

    def __getitem__(self, key: tuple[int, int]) -> tuple[torch.Tensor, torch.Tensor]:
        index, seed = key
        rng = np.random.default_rng(seed)
        image, label, _ = self.base[index]
        if self.config.resize is not None:
            return self.resized(image, label, self.config.resize)
        bgr = torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1).flip(0).float()
        y = torch.from_numpy(np.asarray(label, dtype=np.int64))
        scale = self.config.scale_factors[int(rng.integers(len(self.config.scale_factors)))]
        if scale != 1:
            h, w = y.shape
            size = (max(1, int(h * scale)), max(1, int(w * scale)))  # Caffe truncates
            bgr = F.interpolate(bgr[None], size=size, mode="bilinear", align_corners=False)[0]
            bgr = bgr.round().clamp(0, 255)  # cv::resize of a uint8 image gives uint8
            y = F.interpolate(y[None, None].float(), size=size, mode="nearest")[0, 0].long()
        crop = self.config.crop_size
        pad_h, pad_w = max(0, crop - y.shape[0]), max(0, crop - y.shape[1])
        x = bgr - self.mean
        if pad_h or pad_w:  # the mean in pixel space is zero after subtraction
            x = F.pad(x, (0, pad_w, 0, pad_h), value=0.0)
            y = F.pad(y, (0, pad_w, 0, pad_h), value=self.config.ignore_index)
        top = int(rng.integers(0, x.shape[1] - crop + 1))
        left = int(rng.integers(0, x.shape[2] - crop + 1))
        x = x[:, top : top + crop, left : left + crop]
        y = y[top : top + crop, left : left + crop]
        if self.config.flip and rng.random() < 0.5:
            x, y = x.flip(-1), y.flip(-1)
        return x.contiguous(), y.contiguous()

    def resized(
        self, image: np.ndarray, label: np.ndarray, size: Sequence[int]
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``(3, height, width) float32`` BGR minus the mean and ``(height, width) int64``
        labels of an RGB ``uint8`` image and its labels resized to ``size`` = (width,
        height): the image with PIL's bicubic filter, the labels with its nearest neighbour."""
        width, height = size
        photo = Image.fromarray(np.ascontiguousarray(image, dtype=np.uint8), mode="RGB")
        rgb = np.array(photo.resize((width, height), Image.BICUBIC))
        labels = Image.fromarray(np.asarray(label, dtype=np.int32), mode="I")
        y = np.array(labels.resize((width, height), Image.NEAREST), dtype=np.int64)
        bgr = torch.from_numpy(rgb).permute(2, 0, 1).flip(0).float()
        return (bgr - self.mean).contiguous(), torch.from_numpy(y)


def batch_keys(
    n: int, config: Config, iteration: int, micro: int, rank: int, world: int
) -> list[tuple[int, int]]:
    """The ``(index, augmentation seed)`` pairs of one micro-batch of one rank.

    Sample order comes from a ``DistributedSampler`` (one shuffled pass per epoch, split across
    ranks); everything is a function of the iteration, so resuming needs no loader state.
    """
    per_rank = config.batch_size // (world * config.accumulate)
    position = (iteration * config.accumulate + micro) * per_rank
    per_epoch = math.ceil(n / world)
    sampler = torch.utils.data.DistributedSampler(
        range(n), num_replicas=world, rank=rank, shuffle=True, seed=config.seed
    )
    orders: dict[int, list[int]] = {}  # one permutation per epoch the micro-batch touches
    keys = []
    for offset in range(position, position + per_rank):
        epoch, slot = divmod(offset, per_epoch)
        if epoch not in orders:
            sampler.set_epoch(epoch)
            orders[epoch] = list(sampler)
        seed = hash((config.seed, rank, offset)) & 0x7FFFFFFF
        keys.append((orders[epoch][slot], seed))
    return keys


# -- the loss ---------------------------------------------------------------------------------


def per_image_ce(
    logits: torch.Tensor,
    labels: torch.Tensor,
    ignore_index: int,
    weight: Optional[torch.Tensor] = None,
) -> torch.Tensor:
    """Cross-entropy of each image averaged over its labelled pixels: ``(B,)`` (Caffe's
    ``SoftmaxWithLoss`` with ``VALID`` normalisation on a batch of one; 0 for no pixels).

    With class weights ``(C,)``, each pixel's term is multiplied by its target's weight and
    the average is over the weights (``sum w_y l / sum w_y``, as PyTorch's weighted mean).
    """
    pixels = F.cross_entropy(
        logits.float(), labels, weight=weight, ignore_index=ignore_index, reduction="none"
    )
    valid = labels != ignore_index
    if weight is None:
        return pixels.flatten(1).sum(1) / valid.flatten(1).sum(1).clamp(min=1)
    target = weight[labels.clamp(0, weight.numel() - 1)] * valid
    total = target.flatten(1).sum(1)
    return torch.where(total > 0, pixels.flatten(1).sum(1) / total.clamp(min=1e-12), 0.0)


def release_targets(
    output: MultiScaleOutput, scales: Sequence[float], labels: torch.Tensor
) -> list[tuple[str, torch.Tensor, torch.Tensor]]:
    """``(name, logits, labels)`` of each term of the release's MSC loss.

    Caffe's ``Interp`` with shrink factor ``k`` samples the label at integer positions, so it
    is ``label[::k, ::k]``: ``k = 8`` for the 1.0 branch and the fusion, ``k = 16`` for the 0.5
    branch. A branch whose stride is not an integer (0.75: 31x31 logits for a 321 crop) is
    upsampled to the 1.0 branch's size (corners aligned) and compared with ``label[::8, ::8]``.
    """
    label8 = labels[:, ::8, ::8]
    size = output.fused.shape[-2:]
    terms = [("fused", output.fused, label8)]
    for scale, logits in zip(scales, output.per_scale):
        stride = 8 / scale
        if stride == int(stride):  # 1.0: label[::8], 0.5: label[::16]
            target = labels[:, :: int(stride), :: int(stride)]
            terms.append((f"x{scale:g}", logits, target))
        else:  # 0.75: the logits go up to the 1.0 size
            terms.append((f"x{scale:g}", resize_bilinear(logits, (size[0], size[1])), label8))
    for name, logits, target in terms:
        if logits.shape[-2:] != target.shape[-2:]:
            raise ValueError(
                f"the {name} logits are {tuple(logits.shape[-2:])} but the labels subsampled to "
                f"them are {tuple(target.shape[-2:])}: use a crop size of the form 8k + 1 (321)"
            )
    return terms


def nearest(labels: torch.Tensor, size: Sequence[int]) -> torch.Tensor:
    """``(B, H, W)`` labels resized by nearest neighbour to ``size`` (255 stays 255)."""
    resized = F.interpolate(labels[:, None].float(), size=tuple(size), mode="nearest")
    return resized[:, 0].long()


def branch_losses(
    output: Any,
    labels: torch.Tensor,
    config: Config,
    scales: Sequence[float],
    weight: Optional[torch.Tensor] = None,
):
    """The loss terms by name: ``(B,)`` per image (``caffe``) or batch scalars (``nearest``,
    ``upsampled``).

    With MSC, the release's four terms (:func:`release_targets`) or the port's (every branch
    and the fusion against nearest-resized labels); without, the network's logits alone.
    ``upsampled`` (AdaptSegNet's): the logits (``main``, and ``aux`` for a multi-level
    network's :class:`Levels`) upsampled bilinearly, corners aligned, to the labels' size, each
    averaged over the batch's labelled pixels (:func:`weighted_sum` weighs ``aux``).
    ``weight``: the class weights of ``class_weights`` (None: unweighted).
    """
    ignore = config.ignore_index
    if config.loss == "upsampled":
        heads = output._asdict() if isinstance(output, Levels) else {"main": output}
        size = (labels.shape[-2], labels.shape[-1])
        return {
            name: F.cross_entropy(
                resize_bilinear(z.float(), size), labels, weight=weight, ignore_index=ignore
            )
            for name, z in heads.items()
        }
    if config.loss == "caffe":
        if not isinstance(output, MultiScaleOutput):
            return {"logits": per_image_ce(output, labels[:, ::8, ::8], ignore, weight)}
        return {
            name: per_image_ce(z, target, ignore, weight)
            for name, z, target in release_targets(output, scales, labels)
        }
    named = (
        [("fused", output.fused)] + [(f"x{s:g}", z) for s, z in zip(scales, output.per_scale)]
        if isinstance(output, MultiScaleOutput)
        else [("logits", output)]
    )
    return {
        name: F.cross_entropy(
            z.float(), nearest(labels, z.shape[-2:]), weight=weight, ignore_index=ignore
        )
        for name, z in named
    }


def weighted_sum(terms: dict[str, Any], config: Config) -> Any:
    """The sum of the loss terms, the auxiliary head's (``aux``) times ``aux_loss_weight``
    (AdaptSegNet's ``lambda_seg``); every other term counts once."""
    return sum(t * config.aux_loss_weight if name == "aux" else t for name, t in terms.items())


class TwoLevels(nn.Module):
    """A multi-level network whose ``forward`` is its :meth:`~DeepLabV2.forward_levels` (both
    heads' logits, :class:`Levels`), so that DistributedDataParallel sees the pass."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> Levels:
        return self.model.forward_levels(x)


# -- model and optimisation ------------------------------------------------------------------------


def build_model(config: Config, data: Any = None) -> nn.Module:
    """The network with its initialisation, class names and test protocol (the family's, with
    the training mean), and what it has seen: the initialisation's lineage plus this run
    (:func:`run_stage`). A weakly supervised run (``supervision: "weak"``) from weights that saw
    pixel labels warns, and the warning stays in the weights' record (and saved files)."""
    model = network(config, config.init)
    init = model.pretrained_info
    lineage = init.lineage if init is not None else ()
    warning = init.warning if init is not None else None
    seen = pixel_label_stages(lineage)
    if config.supervision == "weak" and seen:
        weak = (
            f"a weakly supervised run started from weights that saw pixel labels "
            f"({init.name or init.source}: {'; '.join(seen)}): not comparable with weakly "
            "supervised results from an ImageNet initialisation"
        )
        warnings.warn(f"train.py: {weak}", stacklevel=2)
        warning = weak if warning is None else f"{weak}; {warning}"
    model.class_names = config.names()
    model.pretrained_info = PretrainedInfo(
        source="examples/train.py",
        classes=model.class_names,
        protocol=trained_protocol(config, model),
        lineage=lineage + (run_stage(config, data),),
        warning=warning,
    )
    return model


def network(config: Config, pretrained: Optional[str]) -> nn.Module:
    """The config's network (``model``, ``blocks``, ``model_args``) with ``pretrained``."""
    args = config.model_args
    if config.model == "deeplab_v2_resnet101" and list(config.blocks) != [3, 4, 23, 3]:
        return DeepLabV2(num_classes=config.num_classes, blocks=tuple(config.blocks), **args)
    return get_model(config.model, pretrained=pretrained, num_classes=config.num_classes, **args)


def trained_protocol(config: Config, model: nn.Module) -> EvalProtocol:
    """The trained weights' test protocol: the family's (``model.default_protocol``) with the
    config's ``protocol`` settings and the training mean."""
    values = {**model.default_protocol.as_dict(), **(config.protocol or {})}
    return EvalProtocol.from_dict({**values, "mean_bgr": list(config.mean_bgr)})


def run_stage(config: Config, data: Any = None) -> str:
    """This run as a lineage stage: ``"<data> <split> (<labels>)"`` (``"VOC 2012 trainaug
    (pseudo-labels, weak supervision)"``), so that ``evaluate`` knows which split it saw."""
    name = getattr(data, "data_name", None) or f"{config.dataset} dataset"
    split = getattr(data, "split_name", None) or Path(config.split).stem
    labels = PIXEL_LABELS if config.supervision == "full" else "pseudo-labels, weak supervision"
    return f"{name} {split} ({labels})"


def param_groups(model: nn.Module, config: Config) -> list[dict]:
    """Backbone (and VGG fc6/fc7) at ``lr``; the classifier's (and an auxiliary head's)
    weights at ``head_lr_mult`` x ``lr`` (10), its biases at ``head_bias_lr_mult`` x ``lr``
    (20), without weight decay unless ``head_bias_decay`` (the release's
    ``lr_mult``/``decay_mult``; AdaptSegNet's ``optim_parameters``: 10x for both, all decayed)."""
    classifier = [
        (n, p)
        for n, p in model.named_parameters()
        if p.requires_grad and (n.startswith(("aspp.convs.", "aux.convs.")) or ".fc8." in n)
    ]
    ids = {id(p) for _, p in classifier}
    rest = [p for p in model.parameters() if p.requires_grad and id(p) not in ids]
    weights = [p for n, p in classifier if n.endswith("weight")]
    biases = [p for n, p in classifier if n.endswith("bias")]
    return [
        {"params": rest, "lr": config.lr, "lr_mult": 1.0, "weight_decay": config.weight_decay},
        {
            "params": weights,
            "lr": config.lr * config.head_lr_mult,
            "lr_mult": float(config.head_lr_mult),
            "weight_decay": config.weight_decay,
        },
        {
            "params": biases,
            "lr": config.lr * config.head_bias_lr_mult,
            "lr_mult": float(config.head_bias_lr_mult),
            "weight_decay": config.weight_decay if config.head_bias_decay else 0.0,
        },
    ]


def poly_lr(config: Config, iteration: int) -> float:
    """``lr * (1 - iteration / max_iter) ** power`` (Caffe's "poly" policy)."""
    return config.lr * (1 - iteration / config.max_iter) ** config.power


def checksum(model: nn.Module) -> str:
    digest = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()


def all_finite(model: nn.Module) -> bool:
    tensors = model.state_dict().values()
    return all(torch.isfinite(t).all() for t in tensors if t.is_floating_point())


# -- ranks: failing together ------------------------------------------------------------------


def start_ranks(timeout_s: float = DIST_TIMEOUT_S) -> Ranks:
    """Join ``torchrun``'s process group (if any) with a bounded timeout, then
    :func:`deeplabv2.distributed.start` (NCCL on GPUs, gloo on CPUs)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world > 1 and dist.is_available() and not dist.is_initialized():
        backend = "nccl" if torch.cuda.is_available() else "gloo"
        dist.init_process_group(backend, timeout=datetime.timedelta(seconds=timeout_s))
    return start()


def agree(ranks: Ranks, error: Optional[BaseException]) -> None:
    """Tell every rank whether any rank failed, and stop them all if one did.

    A collective operation: every rank calls it at the same point, with the exception it met
    there (or None). If any rank failed, the lowest failed rank raises its own error (so it is
    printed once) and every other rank raises :class:`PeerFailure`.
    """
    if not ranks.distributed:
        if error is not None:
            raise error
        return
    device = "cuda" if dist.get_backend() == "nccl" else "cpu"
    flags = torch.zeros(ranks.world, dtype=torch.int32, device=device)
    flags[ranks.rank] = int(error is not None)
    dist.all_reduce(flags)
    failed = flags.nonzero().flatten().tolist()
    if not failed:
        return
    if error is not None and failed[0] == ranks.rank:
        raise error
    raise PeerFailure(failed)


@contextlib.contextmanager
def checked(ranks: Ranks) -> Iterator[None]:
    """Run the block on this rank alone, then :func:`agree` on whether it failed anywhere.

    The block must not start a collective operation after anything that can fail (a rank that
    failed would wait in :func:`agree` while the others wait in that operation).
    """
    error: Optional[Exception] = None
    try:
        yield
    except Exception as caught:  # an interrupt is not caught: torchrun stops the others
        error = caught
    agree(ranks, error)


def leave(ranks: Ranks, failed: bool) -> None:
    """Leave the process group: after a barrier when the run succeeded, without one after a
    failure (the other ranks stop by :func:`agree`, or when this process is gone)."""
    if not failed:
        stop(ranks)
    elif ranks.distributed and dist.is_initialized():
        with contextlib.suppress(Exception):
            dist.destroy_process_group()


def env_rank() -> int:
    """This process's rank as ``torchrun`` set it (0 outside ``torchrun``)."""
    return int(os.environ.get("RANK", "0"))


# -- one run ------------------------------------------------------------------------------------


@dataclass
class Run:
    """What the loop needs: settings, places, model, optimiser, data and the ranks."""

    config: Config
    out: Path
    model: nn.Module
    net: nn.Module
    optimizer: torch.optim.Optimizer
    train_set: TrainSet
    val_set: Any
    device: torch.device
    ranks: Ranks = Ranks()
    last_checkpoint: Optional[int] = None
    logger: Any = None
    skipped: list[int] = field(default_factory=list)  # iterations whose step was skipped
    class_weight: Optional[torch.Tensor] = None  # the cross-entropy's (C,) class weights

    @property
    def rank(self) -> int:
        return self.ranks.rank

    @property
    def world(self) -> int:
        return self.ranks.world

    @property
    def scales(self) -> tuple[float, ...]:
        return getattr(self.net.module if self.world > 1 else self.net, "scales", (1.0,))


def train_step(run: Run, iteration: int) -> dict[str, float]:
    """One SGD step (all accumulation micro-batches); returns the losses for the log.

    Under ``torchrun`` the ranks agree after loading their images and after the forward pass
    (:func:`checked`), so one rank's failure there stops all of them instead of leaving them in
    the gradients' all-reduce.

    Raises:
        NonFiniteLossError: the loss or a gradient is not finite (unless ``skip_nonfinite``,
            which skips the step).
        PeerFailure: another rank failed.
    """
    config = run.config
    lr = poly_lr(config, iteration)
    for group in run.optimizer.param_groups:
        group["lr"] = lr * group["lr_mult"]
    run.optimizer.zero_grad(set_to_none=True)
    per_rank_images = config.batch_size // run.world
    sums: dict[str, float] = {}
    for micro in range(config.accumulate):
        with checked(run.ranks):  # this rank's images
            keys = batch_keys(len(run.train_set), config, iteration, micro, run.rank, run.world)
            x, y = (torch.stack(t).to(run.device) for t in zip(*(run.train_set[k] for k in keys)))
        with checked(run.ranks):  # DDP's own collectives come first in its forward
            with torch.autocast(run.device.type, dtype=torch.bfloat16, enabled=config.amp):
                output = run.net(x)
            terms = branch_losses(output, y, config, run.scales, run.class_weight)
            if config.loss == "caffe":  # images are averaged over the whole (global) batch
                loss = sum(t.sum() for t in terms.values()) / per_rank_images
            else:
                loss = weighted_sum(terms, config) / config.accumulate
        loss.backward()
        for name, value in terms.items():
            share = (
                value.detach().sum() / per_rank_images if config.loss == "caffe" else value.detach()
            )
            sums[name] = sums.get(name, 0.0) + float(share) / (
                1 if config.loss == "caffe" else config.accumulate
            )
    grads_finite = all(
        bool(torch.isfinite(p.grad).all()) for p in run.model.parameters() if p.grad is not None
    )
    # the loss and whether any rank's gradients are not finite, the same on every rank
    device = "cuda" if run.world > 1 and dist.get_backend() == "nccl" else "cpu"
    total = torch.tensor([weighted_sum(sums, config), float(not grads_finite)], dtype=torch.float64)
    total = total.to(device)
    if run.world > 1:
        dist.all_reduce(total)
    loss_value = float(total[0]) / run.world
    if not math.isfinite(loss_value) or float(total[1]) > 0:
        what = "loss" if not math.isfinite(loss_value) else "gradient"
        if not config.skip_nonfinite:
            last = (
                f"the last good checkpoint is {run.out / 'checkpoint.safetensors'} "
                f"(iteration {run.last_checkpoint}; --resume continues from it)"
                if run.last_checkpoint
                else "no checkpoint was written yet"
            )
            error = NonFiniteLossError(
                f"iteration {iteration + 1}: the {what} is not finite (loss {loss_value}); "
                f"stopping: {last}. Lower the learning rate or check the initialisation, or set "
                "skip_nonfinite to skip such steps"
            )
            agree(run.ranks, error)  # every rank is here: the error is printed once
        run.optimizer.zero_grad(set_to_none=True)
        return {"loss": loss_value, "lr": lr, "skipped": 1.0}
    run.optimizer.step()
    return {"loss": loss_value, "lr": lr, **{f"loss/{k}": v for k, v in sums.items()}}


# -- checkpoints: safetensors and JSON, never a pickle -----------------------------------------


@dataclass
class ResumeState:
    """What ``--resume`` restores."""

    iteration: int
    model: dict[str, torch.Tensor]
    optimizer: dict  # an optimizer state dict
    rng_torch: torch.Tensor
    rng_cuda: list[torch.Tensor]
    rng_python: tuple
    skipped: list[int]


def resume_state(run: Run, done: int) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """The tensors and the metadata (JSON strings) of ``<out>/resume.safetensors``."""
    tensors = {f"model/{k}": v.detach().cpu().contiguous() for k, v in
               run.model.state_dict().items()}  # fmt: skip
    optimizer = run.optimizer.state_dict()
    plain: dict[str, dict] = {}
    for index, entries in optimizer["state"].items():
        for name, value in entries.items():
            if torch.is_tensor(value):
                tensors[f"optimizer/{index}/{name}"] = value.detach().cpu().contiguous()
            else:
                plain.setdefault(str(index), {})[name] = value
    tensors["rng/torch"] = torch.get_rng_state()
    if run.device.type == "cuda":
        for index, state in enumerate(torch.cuda.get_rng_state_all()):
            tensors[f"rng/cuda/{index}"] = state
    metadata = {
        "format": RESUME_FORMAT,
        "iteration": json.dumps(done),
        "optimizer": json.dumps(
            {"param_groups": optimizer["param_groups"], "state": plain}, allow_nan=False
        ),
        "rng_python": json.dumps(random.getstate()),
        "skipped": json.dumps(run.skipped),
        "config": json.dumps(asdict(run.config)),
    }
    return tensors, metadata


def save_checkpoint(run: Run, done: int) -> None:
    """Model (``checkpoint.safetensors``) and the resume state (``resume.safetensors``) after
    ``done`` iterations, by rank 0; never non-finite weights."""
    if not all_finite(run.model):
        raise NonFiniteLossError(f"iteration {done}: the weights are not finite; nothing written")
    if run.rank == 0:
        save_weights(run.model, run.out / "checkpoint.safetensors", force=True, source="train.py")
        tensors, metadata = resume_state(run, done)
        atomic_write(
            run.out / RESUME_FILE,
            lambda tmp: save_file(tensors, tmp, metadata=metadata),
            force=True,
        )
    run.last_checkpoint = done


def read_resume_file(path: Path) -> ResumeState:
    """The state in a ``resume.safetensors`` (read without unpickling anything)."""
    foreign = f"{path} is not a resume file written by examples/train.py"
    try:
        with safe_open(str(path), framework="pt", device="cpu") as handle:
            metadata = handle.metadata() or {}
            tensors = {key: handle.get_tensor(key) for key in handle.keys()}
    except (SafetensorError, OSError, ValueError, RuntimeError) as error:
        raise CheckpointError(f"{foreign} ({error}); start again with another --out") from None
    if metadata.get("format") != RESUME_FORMAT:
        raise CheckpointError(
            f"{foreign} (format {metadata.get('format')!r}, expected {RESUME_FORMAT!r})"
        )
    try:
        optimizer = json.loads(metadata["optimizer"])
        state: dict = {int(k): dict(v) for k, v in optimizer["state"].items()}
        for key, tensor in tensors.items():
            if key.startswith("optimizer/"):
                _, index, name = key.split("/", 2)
                state.setdefault(int(index), {})[name] = tensor
        python = json.loads(metadata["rng_python"])
        cuda = sorted((k for k in tensors if k.startswith("rng/cuda/")), key=lambda k: int(k[9:]))
        return ResumeState(
            iteration=int(json.loads(metadata["iteration"])),
            model={k[len("model/") :]: v for k, v in tensors.items() if k.startswith("model/")},
            optimizer={"state": state, "param_groups": optimizer["param_groups"]},
            rng_torch=tensors["rng/torch"],
            rng_cuda=[tensors[k] for k in cuda],
            rng_python=(python[0], tuple(python[1]), python[2]),
            skipped=[int(i) for i in json.loads(metadata.get("skipped", "[]"))],
        )
    except (KeyError, ValueError, TypeError, AttributeError, IndexError) as error:
        raise CheckpointError(f"{path}: an incomplete resume file ({error!r})") from None


def read_legacy_checkpoint(path: Path) -> ResumeState:
    """The state in an older version's ``checkpoint.pt``, read with ``weights_only=True``:
    tensors and plain containers only, so a planted file cannot run code."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # UnpicklingError for anything but plain data, or garbage
        first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise CheckpointError(
            f"refused {path}: it is not a checkpoint of examples/train.py (it holds more than "
            f"tensors and plain data: {first}); nothing in it was run. Start again with another "
            "--out"
        ) from None
    try:
        return ResumeState(
            iteration=int(state["iteration"]),
            model=dict(state["model"]),
            optimizer=dict(state["optimizer"]),
            rng_torch=state["rng"]["torch"],
            rng_cuda=[],
            rng_python=tuple(state["rng"]["python"]),
            skipped=[],
        )
    except (KeyError, TypeError, ValueError) as error:
        raise CheckpointError(
            f"{path} is not a checkpoint of examples/train.py (no {error})"
        ) from None


def load_checkpoint(run: Run, convert: bool = False) -> int:
    """Restore a run from ``<out>/resume.safetensors`` (or, with ``convert``, an older
    version's ``<out>/checkpoint.pt``); returns the iteration to continue at.

    Raises:
        CheckpointError: nothing to resume from, an older checkpoint without ``convert``, or a
            file that train.py did not write (it is never unpickled).
    """
    path, legacy = run.out / RESUME_FILE, run.out / LEGACY_CHECKPOINT
    if path.is_file():
        state, source = read_resume_file(path), path
    elif legacy.is_file():
        if not convert:
            raise CheckpointError(
                f"{legacy} is a checkpoint of an older examples/train.py: a pickle, which this "
                f"version does not load (unpickling a planted file can run code). If you wrote "
                f"it yourself, add --convert-checkpoint to --resume: it is read once with "
                f"torch.load(weights_only=True) (tensors and plain data only) and the run "
                f"continues, writing {RESUME_FILE} from then on. Else start again with another "
                "--out"
            )
        state, source = read_legacy_checkpoint(legacy), legacy
    else:
        raise CheckpointError(
            f"--resume: no {path} to continue from (a run writes it every checkpoint_every "
            "iterations and with --stop-at)"
        )
    try:
        run.model.load_state_dict(state.model)
        run.optimizer.load_state_dict(state.optimizer)
        torch.set_rng_state(state.rng_torch)
        if state.rng_cuda and run.device.type == "cuda":
            torch.cuda.set_rng_state_all(state.rng_cuda)
        random.setstate(state.rng_python)
    except (RuntimeError, ValueError, TypeError, KeyError, IndexError) as error:
        detail = " ".join(str(error).split()) or repr(error)
        detail = detail if len(detail) <= 300 else detail[:300] + " ..."
        raise CheckpointError(
            f"{source} does not fit this run's model and optimizer ({detail}): was it written "
            "with another config?"
        ) from None
    run.last_checkpoint = state.iteration
    run.skipped = list(state.skipped)
    return state.iteration


# -- validation ---------------------------------------------------------------------------------


class GuardedDataset:
    """A dataset whose read errors are kept instead of raised: the rank whose image fails still
    joins the evaluation's collective reduction (with an image that scores nothing), and the
    error is raised after it on every rank (:func:`agree`)."""

    def __init__(self, base: Any) -> None:
        self.base, self.error = base, None
        self.split = getattr(base, "split", "")

    def __len__(self) -> int:
        return len(self.base)

    def __getitem__(self, index: int) -> tuple[np.ndarray, np.ndarray, str]:
        if self.error is None:
            try:
                return self.base[index]
            except Exception as error:
                self.error = error
        return np.zeros((65, 65, 3), np.uint8), np.full((65, 65), 255, np.int64), "(failed)"


def validate(run: Run) -> dict:
    """Scores on the validation set with the library's evaluation (the protocol the trained
    weights will record, at a single scale), sharded across the ranks; the model returns to
    training mode."""
    protocol = trained_protocol(run.config, run.model)
    segmenter = Segmenter(
        run.model, device=run.device, scales=(), msc_mode=protocol.msc_mode,
        pad_to=protocol.pad_to, mean_bgr=protocol.mean_bgr, resize_to=protocol.resize_to,
        upsampling=protocol.upsampling,
    )  # fmt: skip
    guarded = GuardedDataset(run.val_set)
    with warnings.catch_warnings():  # a config may validate on its training split
        warnings.filterwarnings("ignore", message=".*scored anyway")
        scores = evaluate(
            segmenter, guarded, progress=False, crf_workers=0, ranks=run.ranks,
            allow_seen_data=True,
        )  # fmt: skip
    run.model.train()
    agree(run.ranks, guarded.error)
    return scores


def train_steps(run: Run, start: int, end: int) -> Iterator[tuple[int, dict]]:
    """Iterations ``start`` .. ``end - 1``, with validation, checkpoints and the log on
    schedule."""
    config = run.config
    for iteration in range(start, end):
        record = train_step(run, iteration)
        done = iteration + 1
        if record.get("skipped"):
            run.skipped.append(done)
        if done % config.val_every == 0 and done < config.final_iter:
            record["val/mean_iou"] = validate(run)["mean_iou"]
        stopping = done == end and end < config.final_iter
        with checked(run.ranks):  # rank 0 writes: a full disk stops every rank
            if (done % config.checkpoint_every == 0 or stopping) and done < config.final_iter:
                save_checkpoint(run, done)
            if run.logger is not None:
                run.logger.log(done, record)
        yield done, record


def json_safe(value: Any) -> Any:
    """``value`` with every non-finite float replaced by None (strict JSON's null)."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    return value


class Logger:
    """JSON lines in ``<out>/log.jsonl`` and, when tensorboard is installed, its scalars."""

    def __init__(self, out: Path) -> None:
        self.path = out / "log.jsonl"
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:  # tensorboard is optional
            self.writer = None
        else:
            self.writer = SummaryWriter(str(out / "tensorboard"))

    def log(self, iteration: int, record: dict) -> None:
        line = json.dumps(json_safe({"iteration": iteration, **record}), allow_nan=False)
        with open(self.path, "a", encoding="utf-8") as handle:
            handle.write(line + "\n")
        if self.writer is not None:
            for key, value in record.items():
                if value is not None:
                    self.writer.add_scalar(key if "/" in key else f"train/{key}", value, iteration)

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


def prepare(
    config: Config,
    data_root: str,
    out: Path,
    ranks: Ranks,
    resume: bool = False,
    convert: bool = False,
    val_root: Optional[str] = None,
) -> tuple[Run, int]:
    """What each rank sets up alone: data, model, optimiser, resume state, output folder.

    The data is read (its list files) before anything is created, so a wrong ``--data``
    (or ``--val-data``, the validation dataset's root: default ``data_root``) leaves no output
    folder. Returns the run and the iteration to start at.
    """
    if config.batch_size % (ranks.world * config.accumulate):
        raise ConfigError(
            f"batch_size {config.batch_size} is not divisible by {ranks.world} ranks x "
            f"{config.accumulate} accumulation steps"
        )
    train_set = TrainSet(dataset(config, data_root, config.split, training=True), config)
    val_set = dataset(config, val_root or data_root, config.val_split, config.val_limit)
    if resume and not out.is_dir():
        raise CheckpointError(f"--resume: {out} does not exist")
    device = ranks.device(None)  # this rank's GPU, else the CPU
    torch.manual_seed(config.seed)
    random.seed(config.seed)
    model = build_model(config, train_set.base).to(device).train()
    weight = class_weights(config, train_set.base)
    groups = param_groups(model, config)
    optimizer = torch.optim.SGD(groups, lr=config.lr, momentum=config.momentum)
    run = Run(
        config=config,
        out=out,
        model=model,
        net=MultiScale(model) if config.msc else TwoLevels(model) if both_heads(config) else model,
        optimizer=optimizer,
        train_set=train_set,
        val_set=val_set,
        device=device,
        ranks=ranks,
        class_weight=None if weight is None else weight.to(device),
    )
    first = load_checkpoint(run, convert) if resume else 0
    out.mkdir(parents=True, exist_ok=True)
    run.logger = Logger(out) if ranks.rank == 0 else None
    return run, first


def both_heads(config: Config) -> bool:
    """Whether the loss takes both heads of a multi-level network (``aux_loss_weight`` > 0)."""
    return config.aux_loss_weight > 0


def unreached_parameters(model: nn.Module, config: Config) -> bool:
    """Whether some trainable parameters get no gradient: the branches AdaptSegNet's heads
    hold but do not sum (``head_branches``), an auxiliary head that no loss takes."""
    args = getattr(model, "model_args", {})
    branches = args.get("head_branches")
    unsummed = branches is not None and branches < len(args.get("rates", ()))
    return unsummed or (bool(args.get("aux_head")) and not both_heads(config))


def distribute(run: Run) -> None:
    """Wrap the network in DistributedDataParallel (several ranks). The buffers (frozen
    BatchNorm statistics) never change, so they are not synchronised in every forward pass:
    the forward has no collective that a failed rank would leave the others waiting in."""
    if not run.ranks.distributed:
        return
    parameters = inspect.signature(nn.parallel.DistributedDataParallel).parameters
    quiet = (
        {"forward_sync_buffers": False}
        if "forward_sync_buffers" in parameters
        else {"broadcast_buffers": False}
    )
    if unreached_parameters(run.model, run.config):
        quiet["find_unused_parameters"] = True
    run.net = nn.parallel.DistributedDataParallel(
        run.net, device_ids=[run.device] if run.device.type == "cuda" else None, **quiet
    )


def train(
    config: Config,
    data_root: str,
    out: Path,
    resume: bool = False,
    stop_at: Optional[int] = None,
    convert_checkpoint: bool = False,
    dist_timeout_s: float = DIST_TIMEOUT_S,
    val_root: Optional[str] = None,
) -> dict:
    """Run (or resume) training; returns the final metrics (on rank 0; {} elsewhere).

    ``stop_at`` ends the run early after that many iterations with a checkpoint (e.g. to fit a
    job's time limit); ``resume`` continues it with an identical result (``convert_checkpoint``
    also accepts an older version's ``checkpoint.pt``, read with ``weights_only=True``).
    ``val_root``: the validation dataset's folder (``val_dataset``; default ``data_root``).
    The result's ``skipped_iterations`` lists the steps ``skip_nonfinite`` skipped.

    Raises:
        ConfigError, CheckpointError, FileNotFoundError, DatasetError: before training.
        NonFiniteLossError: a non-finite loss, gradient or weights.
        PeerFailure: another rank failed (under ``torchrun``; that rank raises the error).
    """
    out = Path(out)
    ranks = start_ranks(dist_timeout_s)
    run: Optional[Run] = None
    failed = True
    try:
        with checked(ranks):
            run, first = prepare(
                config, data_root, out, ranks, resume, convert_checkpoint, val_root
            )
        distribute(run)
        result = run_loop(run, first, stop_at)
        failed = False
        return result
    finally:
        if run is not None and run.logger is not None:
            run.logger.close()
        leave(ranks, failed)


def run_loop(run: Run, start: int, stop_at: Optional[int]) -> dict:
    """Iterations ``start`` .. the end (or ``stop_at``), then the final validation and files."""
    config, out = run.config, run.out
    end = config.final_iter if stop_at is None else min(stop_at, config.final_iter)
    history = []
    with tqdm(initial=start, total=config.final_iter, desc="train", unit="it",
              disable=run.rank != 0) as bar:  # fmt: skip
        for done, record in train_steps(run, start, end):
            history.append({"iteration": done, **record})
            bar.update(1)
            bar.set_postfix(loss=f"{record['loss']:.3f}")
    if end < config.final_iter:
        return {}
    with checked(run.ranks):
        if not all_finite(run.model):
            raise NonFiniteLossError("the final weights are not finite; nothing written")
    scores = validate(run)
    sums = [checksum(run.model)]
    if run.world > 1:
        gathered: list = [None] * run.world
        dist.all_gather_object(gathered, sums[0])
        sums = gathered
    result: dict = {}
    with checked(run.ranks):  # rank 0 writes: its failure stops every rank
        if run.rank == 0:
            save_weights(run.model, out / "final.safetensors", force=True, source="train.py")
            result = {
                "iterations": config.final_iter,
                "val": scores,
                "history": history,
                "skipped_iterations": list(run.skipped),
                "class_weights": None if run.class_weight is None else run.class_weight.tolist(),
                "lineage": list(run.model.pretrained_info.lineage),
                "warning": run.model.pretrained_info.warning,
                "rank_checksums": sums,
                "config": asdict(config),
            }
            text = json.dumps(json_safe(result), indent=2, allow_nan=False)
            atomic_write(out / "metrics.json", lambda tmp: Path(tmp).write_text(text), force=True)
            run.logger.log(config.final_iter, {"val/mean_iou": scores["mean_iou"]})
    return result


def report(result: dict, out: Path) -> None:
    """Print the final score and the skipped steps; exit non-zero if every step or the last
    one was skipped (the weights are then the initial ones, or the run ended diverging)."""
    miou = result["val"]["mean_iou"]
    shown = "n/a" if miou is None else f"{100 * miou:.2f}%"
    print(f"final mIoU {shown} -> {out}/final.safetensors")
    skipped, total = result.get("skipped_iterations") or [], result["iterations"]
    if not skipped:
        return
    listed = ", ".join(map(str, skipped[:20])) + (" ..." if len(skipped) > 20 else "")
    print(
        f"skipped {len(skipped)} of {total} steps (non-finite loss or gradient; "
        f"skip_nonfinite): iterations {listed}",
        file=sys.stderr,
    )
    if len(skipped) == total:
        raise SystemExit(
            "train.py: every step was skipped: the weights are the initial ones. Lower the "
            "learning rate or check the data and the initialisation"
        )
    if total in skipped:
        raise SystemExit(
            "train.py: the last step's loss or gradient was not finite: the run ended diverging. "
            "Lower the learning rate, or --resume from an earlier checkpoint"
        )


class Parser(argparse.ArgumentParser):
    """An argument parser whose errors only rank 0 prints (every rank parses the same)."""

    def error(self, message: str) -> None:  # type: ignore[override]
        if env_rank() == 0:
            self.print_usage(sys.stderr)
            self.exit(2, f"{self.prog}: error: {message}\n")
        self.exit(2)


def main(argv: Optional[Sequence[str]] = None) -> None:
    parser = Parser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", help="JSON config (examples/configs/*.json)")
    parser.add_argument("--data", required=True, help="dataset root")
    parser.add_argument(
        "--val-data",
        dest="val_data",
        help="the validation dataset's root (val_dataset in the config; default: --data)",
    )
    parser.add_argument("--out", required=True, type=Path, help="run directory")
    parser.add_argument("--resume", action="store_true", help=f"continue from <out>/{RESUME_FILE}")
    parser.add_argument(
        "--convert-checkpoint",
        action="store_true",
        help=f"with --resume: accept an older version's <out>/{LEGACY_CHECKPOINT} (read with "
        "torch.load(weights_only=True): tensors and plain data only)",
    )
    parser.add_argument("--stop-at", type=int, help="stop (with a checkpoint) after N iterations")
    parser.add_argument("--max-iter", type=int, dest="max_iter")
    parser.add_argument("--lr", type=float)
    parser.add_argument("--batch-size", type=int, dest="batch_size")
    parser.add_argument("--accumulate", type=int)
    parser.add_argument("--init", help="registry name of the network or a weights file")
    parser.add_argument(
        "--label-dir",
        dest="label_dir",
        help="the training split's labels from this folder (pseudo-labels)",
    )
    parser.add_argument("--model", choices=list_models())
    parser.add_argument("--amp", action="store_true", default=None, help="bfloat16 autocast")
    parser.add_argument(
        "--dist-timeout",
        type=float,
        default=DIST_TIMEOUT_S,
        help=f"seconds a rank waits for the others in a collective ({DIST_TIMEOUT_S:g})",
    )
    args = parser.parse_args(argv)
    if args.stop_at is not None and args.stop_at < 1:
        parser.error(f"--stop-at must be >= 1, got {args.stop_at}")
    if not (math.isfinite(args.dist_timeout) and args.dist_timeout > 0):
        parser.error(
            f"--dist-timeout must be a positive number of seconds, got {args.dist_timeout}"
        )
    if args.convert_checkpoint and not args.resume:
        parser.error("--convert-checkpoint goes with --resume")
    names = ("max_iter", "lr", "batch_size", "accumulate", "amp", "init", "model", "label_dir")
    try:
        config = Config.load(args.config, {k: getattr(args, k) for k in names})
    except ConfigError as error:
        parser.error(str(error))
    if (args.out / "final.safetensors").exists() and not args.resume:
        parser.error(f"{args.out} already holds a finished run; choose another --out")
    try:
        result = train(
            config,
            args.data,
            args.out,
            resume=args.resume,
            stop_at=args.stop_at,
            convert_checkpoint=args.convert_checkpoint,
            dist_timeout_s=args.dist_timeout,
            val_root=args.val_data,
        )
    except PeerFailure as failure:  # the failed rank printed the error
        if env_rank() == 0:
            print(f"train.py: stopped: {failure}", file=sys.stderr)
        raise SystemExit(1) from None
    except (NonFiniteLossError, ConfigError, CheckpointError, DeepLabV2Error,
            FileNotFoundError) as error:  # fmt: skip
        raise SystemExit(f"train.py: {error}") from None
    if result:
        report(result, args.out)


if __name__ == "__main__":
    main()
