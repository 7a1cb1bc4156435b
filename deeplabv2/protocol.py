"""How weights are evaluated (:class:`EvalProtocol`) and what a model's weights are
(:class:`PretrainedInfo`): plain typed data at the bottom of the package.

The release's protocol, the PyTorch port's and the unsupervised domain adaptation works' (their
DeepLab v2 checkpoints on Cityscapes) are stated here once; every door (the
:class:`~deeplabv2.Segmenter`, the CLI, the demo, ONNX export, the training example) starts from
the protocol of the model's weights (:func:`protocol_of`) and applies only what the user
overrode (``dataclasses.replace``).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import asdict, dataclass, fields
from typing import Any, Optional

from .data.constants import CAFFE_MEAN_BGR

__all__ = [
    "PORT_PROTOCOL",
    "RELEASE_PROTOCOL",
    "UDA_MEAN_BGR",
    "UDA_PROTOCOL",
    "UPSAMPLINGS",
    "VGG_RELEASE_PROTOCOL",
    "EvalProtocol",
    "PIXEL_LABELS",
    "PretrainedInfo",
    "pixel_label_stages",
    "protocol_of",
    "stages_that_saw",
]

_MSC_MODES = ("caffe", "pytorch")
#: How logits at output stride 8 become the image's: ``"zoom"`` (the release's: zoomed by 8 with
#: the corners aligned, logit ``i`` on pixel ``8 i``, then cropped to the image) or
#: ``"stretch"`` (the UDA works': bilinear with ``align_corners=True`` straight to the image's
#: size, the first and last logits on its first and last pixels).
UPSAMPLINGS = ("zoom", "stretch")
# keys as_dict leaves out at these values, so that files of the protocols without them read
# as before (and in versions that do not know them)
_OPTIONAL_KEYS = {"resize_to": None, "upsampling": "zoom"}


@dataclass(frozen=True)
class EvalProtocol:
    """How weights are evaluated, as their authors did it.

    Attributes:
        msc_mode: resizing of the multi-scale inputs: ``"caffe"`` (the release's ``Interp``
            layer) or ``"pytorch"`` (the PyTorch port's ``F.interpolate``); see
            :class:`deeplabv2.msc.MultiScale`.
        scales: the extra input scales of multi-scale testing (besides 1.0); ``()`` for a
            single scale.
        pad_to: images are padded at the bottom/right with the mean to this square size
            (the release: 513), or None to run them at their own size (the PyTorch port).
        crf: the name of the dense CRF preset (:data:`deeplabv2.crf.PRESETS`).
        mean_bgr: the per-channel mean (B, G, R) subtracted from the input (the release's
            ImageNet mean; a network trained with another keeps it here).
        resize_to: ``(width, height)``: every image is resized to this size (PIL bicubic on
            the ``uint8`` RGB image) before the network, whatever its own size, and the
            results come back at the image's own size; None runs images at their own size.
            Needs ``upsampling="stretch"`` and ``pad_to=None`` (the network input is fixed
            already); extra ``scales`` run on the resized input.
        upsampling: how the logits become the image's (:data:`UPSAMPLINGS`): ``"zoom"`` (the
            release's zoom by 8, corners aligned, then cropped) or ``"stretch"`` (bilinear,
            ``align_corners=True``, straight to the image's size; needs ``pad_to=None``: a
            padded input's logits cover the padding too).
    """

    msc_mode: str = "caffe"
    scales: tuple[float, ...] = (0.5, 0.75)
    pad_to: Optional[int] = 513
    crf: str = "resnet101-voc"
    mean_bgr: tuple[float, float, float] = CAFFE_MEAN_BGR
    resize_to: Optional[tuple[int, int]] = None
    upsampling: str = "zoom"

    def __post_init__(self) -> None:
        if self.msc_mode not in _MSC_MODES:
            raise ValueError(f"msc_mode must be one of {_MSC_MODES}, got {self.msc_mode!r}")
        pad_to = self.pad_to
        if pad_to is not None and (not isinstance(pad_to, int) or pad_to < 1 or (pad_to - 1) % 8):
            raise ValueError(f"pad_to must be of the form 8k + 1 (e.g. 513) or None, got {pad_to}")
        scales = tuple(float(s) for s in self.scales)
        if any(not 0 < s for s in scales):
            raise ValueError(f"scales must be positive, got {self.scales}")
        object.__setattr__(self, "scales", scales)
        if len(self.mean_bgr) != 3:
            raise ValueError(f"mean_bgr must hold 3 values (B, G, R), got {self.mean_bgr}")
        object.__setattr__(self, "mean_bgr", tuple(float(m) for m in self.mean_bgr))
        self._check_resizing()

    def _check_resizing(self) -> None:
        """``upsampling`` and ``resize_to``, and what they exclude."""
        if self.upsampling not in UPSAMPLINGS:
            raise ValueError(f"upsampling must be one of {UPSAMPLINGS}, got {self.upsampling!r}")
        size = self.resize_to
        if size is not None:
            if (
                len(size) != 2
                or any(isinstance(side, bool) or not isinstance(side, int) for side in size)
                or min(size) < 1
            ):
                raise ValueError(
                    f"resize_to must be (width, height), two positive integers, got {size!r}"
                )
            object.__setattr__(self, "resize_to", tuple(size))
            if self.pad_to is not None or self.upsampling != "stretch":
                raise ValueError(
                    f"resize_to={tuple(size)} needs pad_to=None and upsampling='stretch' (got "
                    f"pad_to={self.pad_to}, upsampling={self.upsampling!r}): the resized input "
                    "is the network's whole input, and its logits are stretched to the image's "
                    "own size; pass both with resize_to (UDA_PROTOCOL has them)"
                )
        if self.upsampling == "stretch" and self.pad_to is not None:
            raise ValueError(
                f"upsampling='stretch' with pad_to={self.pad_to}: the logits of a padded input "
                "cover the padding too, so stretching them to the image shifts every label; "
                "pass pad_to=None (or upsampling='zoom', the release's)"
            )

    def as_dict(self) -> dict[str, Any]:
        """The protocol as plain JSON-able values; ``resize_to`` and ``upsampling`` only where
        they are not the defaults (so a file of another protocol reads as before)."""
        values = asdict(self)
        values["scales"] = list(self.scales)
        values["mean_bgr"] = list(self.mean_bgr)
        for key, default in _OPTIONAL_KEYS.items():
            if values[key] == default:
                del values[key]
        if self.resize_to is not None:
            values["resize_to"] = list(self.resize_to)
        return values

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> EvalProtocol:
        """Inverse of :meth:`as_dict`; unknown keys are refused, missing ones are the
        defaults (a protocol written before ``resize_to``/``upsampling`` existed reads as the
        same protocol)."""
        if not isinstance(values, dict):
            raise ValueError(f"a test protocol is a JSON object, got {type(values).__name__}")
        unknown = set(values) - {field.name for field in fields(cls)}
        if unknown:
            raise ValueError(f"unknown test protocol keys {sorted(unknown)}")
        values = dict(values)
        for key in ("scales", "mean_bgr"):
            if key in values:
                values[key] = tuple(float(s) for s in values[key])
        if values.get("resize_to") is not None:
            values["resize_to"] = tuple(values["resize_to"])
        return cls(**values)


#: The Caffe release's protocol: MSC with ``Interp`` sizes, 513x513 mean padding, its CRF.
RELEASE_PROTOCOL = EvalProtocol()
#: The VGG-16 release's: the same with the VGG-16 CRF settings.
VGG_RELEASE_PROTOCOL = EvalProtocol(crf="vgg16-voc")
#: The PyTorch port's (kazuto1011/deeplab-pytorch): its MSC resizing, images at their own size.
PORT_PROTOCOL = EvalProtocol(msc_mode="pytorch", pad_to=None)
#: The mean (B, G, R) the UDA works subtract (the Caffe ResNet's, to more decimals).
UDA_MEAN_BGR = (104.00698793, 116.66876762, 122.67891434)
#: The unsupervised domain adaptation works' (AdaptSegNet, ADVENT and those built on them) for
#: their DeepLab v2 checkpoints on Cityscapes: each image resized to 1024x512 (PIL bicubic),
#: their mean, one scale, no padding, the main output's logits stretched (bilinear,
#: ``align_corners=True``) to the image's own size. Read in wasidennis/AdaptSegNet
#: ``evaluate_cityscapes.py`` (351fef3a972b44737757e96cae1c8cad2100128b) with
#: ``dataset/cityscapes_dataset.py`` (f80d115a443a227568213a6de40c13fa91c270b9) and
#: ``compute_iou.py`` (fca9ff0f09dab45d44bf6d26091377ac66607028), and in valeoai/ADVENT
#: ``advent/domain_adaptation/eval_UDA.py`` (60e954dc10b5f536f45fb89f3879b5bae87f60b4) with
#: ``advent/dataset/base_dataset.py`` and ``advent/utils/func.py``
#: (7d6f78db5e90980b262243fa4a78f0092b209b97). Their mIoU (one confusion matrix over all images,
#: NaN-mean of the per-class IoUs) is :meth:`deeplabv2.metrics.ConfusionMatrix.scores`'.
UDA_PROTOCOL = EvalProtocol(
    msc_mode="pytorch",
    scales=(),
    pad_to=None,
    mean_bgr=UDA_MEAN_BGR,
    resize_to=(1024, 512),
    upsampling="stretch",
)


@dataclass(frozen=True)
class PretrainedInfo:
    """What a model's loaded weights are (``model.pretrained_info``; None without weights).

    Attributes:
        name: the registry name (``"deeplab_v2_resnet101.voc12"``), or None for a file.
        source: where the weights came from (the original file, URL or training run).
        path: the file that was read, or None (weights made in memory).
        classes: the head's class names, index = output channel; ``()`` when the file names
            none or when no head was loaded.
        has_head: whether the head came with the weights (False: a backbone initialisation,
            or a new head of another class count).
        protocol: how the weights were evaluated (None for an initialisation).
        lineage: the training stages the weights went through, oldest first, each naming
            its data and its labels (``("ImageNet (image labels)", ...)``); ``()`` if unknown.
        warning: what the registry says against some uses (e.g. trained on VOC val), or None.
    """

    name: Optional[str] = None
    source: str = ""
    path: Optional[str] = None
    classes: tuple[str, ...] = ()
    has_head: bool = True
    protocol: Optional[EvalProtocol] = None
    lineage: tuple[str, ...] = ()
    warning: Optional[str] = None

    def as_dict(self) -> dict[str, Any]:
        """The record as plain JSON-able values (the protocol as a dict)."""
        values = asdict(self)
        values["classes"] = list(self.classes)
        values["lineage"] = list(self.lineage)
        values["protocol"] = None if self.protocol is None else self.protocol.as_dict()
        return values


def protocol_of(model: Any) -> EvalProtocol:
    """The test protocol of a model: its weights' (``model.pretrained_info.protocol``), else
    its family's (``model.default_protocol``), else the release's."""
    info = getattr(model, "pretrained_info", None)
    if info is not None and info.protocol is not None:
        return info.protocol
    return getattr(model, "default_protocol", None) or RELEASE_PROTOCOL


# -- lineages: what weights have seen ---------------------------------------------------------

#: The labels of a lineage stage that saw dense, human-made labels (``"... (pixel labels)"``).
PIXEL_LABELS = "pixel labels"
# the disjoint parts of a split that holds others: VOC "trainaug" is train + SBD's extra
# images ("aug"), "trainval" train + val (any other split is its own part)
_PARTS = {"trainaug": {"train", "aug"}, "trainval": {"train", "val"}}


def _parts(split: str) -> set[str]:
    name = re.sub(r"[_-]", "", split.lower())
    return _PARTS.get(name, {name})


def _labels_of(stage: str) -> str:
    """The kind of labels a stage names in its last parentheses (``""`` if none)."""
    match = re.search(r"\(([^()]*)\)\s*$", stage)
    return match.group(1).strip() if match else ""


def pixel_label_stages(lineage: Sequence[str]) -> tuple[str, ...]:
    """The stages of ``lineage`` that trained on pixel labels (``"MS-COCO (pixel labels)"``)."""
    return tuple(stage for stage in lineage if _labels_of(stage) == PIXEL_LABELS)


def stages_that_saw(lineage: Sequence[str], data_name: str, split: str) -> tuple[str, ...]:
    """The stages of ``lineage`` that trained on the images of ``split`` of ``data_name``.

    A stage is ``"<data name> <split>[ + <split> ...] (<labels>)"`` (``"VOC 2012 trainaug + val
    (pixel labels)"``); splits compare lower case without ``_``/``-``, and a stage counts when
    its splits share images with ``split``: ``trainaug`` holds ``train``, ``trainval`` both
    ``train`` and ``val`` (so weights trained on ``train`` have seen part of ``trainval``). A
    stage that names no split of ``data_name`` (``"MS-COCO (pixel labels)"``) is not counted;
    one whose split is ``all`` (``"GTA5 all (pixel labels)"``) saw every split.
    """
    wanted = _parts(split)
    found = []
    for stage in lineage:
        head = re.sub(r"\([^()]*\)\s*$", "", stage).strip()
        if not head.startswith(data_name + " "):
            continue
        names = [s for s in re.split(r"[\s+,]+", head[len(data_name) :]) if s]
        if any(name.lower() == "all" or wanted & _parts(name) for name in names):
            found.append(stage)
    return tuple(found)
