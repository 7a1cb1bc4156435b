"""Named pretrained weights: where they come from, what they predict, how well (as reported)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Optional

from ..data.classes import COCOSTUFF_CLASSES, VOC_CLASSES
from ..data.transforms import CAFFE_MEAN_BGR

__all__ = ["DEFAULT_WEIGHTS", "Weights", "get_weights", "list_weights"]

_RELEASE_ZIP = (
    "http://liangchiehchen.com/projects/released/deeplab_aspp_resnet101/prototxt_and_model.zip"
)
_PORT_RELEASE = "https://github.com/kazuto1011/deeplab-pytorch/releases/download/v1.0/"
_RELEASE_LICENSE = (
    "as released by the DeepLab authors (http://liangchiehchen.com/projects/DeepLab.html); "
    "check the release's terms before redistributing"
)
_PAPER = "Chen et al., DeepLab, TPAMI 2017 (arXiv:1606.00915), ResNet-101 on PASCAL VOC 2012 val"


@dataclass(frozen=True)
class Weights:
    """One set of pretrained weights for ``deeplab_v2_resnet101``.

    Attributes:
        name: registry name (``pretrained=name``).
        num_classes: classes of the ASPP head, or None for a backbone-only initialisation.
        categories: class names, index = output channel.
        description: what the weights are.
        hf_repo, hf_filename, hf_revision: the converted safetensors on the Hugging Face Hub;
            ``hf_revision`` is the pinned 40-character commit, None until they are published
            (then the original source is used).
        url: the original release file (``.caffemodel`` inside a zip, or ``.pth``).
        url_member: the file inside ``url`` when it is a zip archive.
        sha256: checksum of the file the loader reads (the HF file when ``hf_revision`` is set,
            else the downloaded original); None where not known.
        backbone_only: the file's head is not DeepLab v2's ASPP; only the backbone is loaded.
        transforms: the preprocessing the weights expect.
        meta: torchvision-style metadata (``categories``, ``num_params``, ``_metrics``, ``_ops``
            GMACs of one 513x513 forward pass, ``_file_size`` MB of the safetensors, ``_docs``).
        license: the licence of the weights as released.
    """

    name: str
    num_classes: Optional[int]
    categories: tuple[str, ...]
    description: str
    hf_repo: str
    hf_filename: str
    hf_revision: Optional[str]
    url: str
    url_member: Optional[str] = None
    sha256: Optional[str] = None
    backbone_only: bool = False
    transforms: dict[str, Any] = field(
        default_factory=lambda: {
            "input": "BGR float32, 0..255, mean subtracted",
            "mean_bgr": CAFFE_MEAN_BGR,
            "std": None,
            "test_size": 513,
            "train_crop": 321,
        }
    )
    meta: dict[str, Any] = field(default_factory=dict)
    license: str = ""

    def __post_init__(self) -> None:
        if self.hf_revision is not None and len(self.hf_revision) != 40:
            raise ValueError(f"{self.name}: hf_revision must be a 40-character commit sha")


_REGISTRY: dict[str, Weights] = {
    weights.name: weights
    for weights in (
        Weights(
            name="voc12",
            num_classes=21,
            categories=VOC_CLASSES,
            description=(
                "DeepLab v2 ResNet-101 (MSC, ASPP-L) trained on PASCAL VOC 2012 trainaug "
                "(10,582 images) from the MS-COCO initialisation: the release's "
                "train_iter_20000.caffemodel (not train2_iter_20000, which also saw VOC val)."
            ),
            hf_repo="deeplabv2/deeplab_v2_resnet101.voc12",
            hf_filename="model.safetensors",
            hf_revision=None,
            url=_RELEASE_ZIP,
            url_member="train_iter_20000.caffemodel",
            meta={
                "categories": VOC_CLASSES,
                "num_params": 44_048_532,
                "_metrics": {
                    "VOC2012-val": {"mIoU": 76.35, "mIoU+CRF": 77.69, "source": _PAPER},
                },
                "_ops": 188.886,
                "_file_size": 176.7,
                "_docs": "Evaluate with MSC (0.5, 0.75, 1.0) on 513x513 mean-padded inputs.",
            },
            license=_RELEASE_LICENSE,
        ),
        Weights(
            name="coco-init",
            num_classes=None,
            categories=(),
            description=(
                "The release's MS-COCO pretrained ResNet-101 (init.caffemodel), the starting "
                "point of DeepLab v2's VOC training; backbone only, the head is initialised."
            ),
            hf_repo="deeplabv2/deeplab_v2_resnet101.coco-init",
            hf_filename="model.safetensors",
            hf_revision=None,
            url=_RELEASE_ZIP,
            url_member="init.caffemodel",
            backbone_only=True,
            meta={
                "categories": (),
                "num_params": 42_500_160,
                "_metrics": {},
                "_ops": None,
                "_file_size": 170.5,
                "_docs": "Backbone initialisation for training; pass num_classes.",
            },
            license=_RELEASE_LICENSE,
        ),
        Weights(
            name="cocostuff164k",
            num_classes=182,
            categories=COCOSTUFF_CLASSES,
            description=(
                "DeepLab v2 ResNet-101 (MSC) trained on COCO-Stuff 164k by the PyTorch port "
                "kazuto1011/deeplab-pytorch (100k iterations), converted."
            ),
            hf_repo="deeplabv2/deeplab_v2_resnet101.cocostuff164k",
            hf_filename="model.safetensors",
            hf_revision=None,
            url=_PORT_RELEASE + "deeplabv2_resnet101_msc-cocostuff164k-100000.pth",
            meta={
                "categories": COCOSTUFF_CLASSES,
                "num_params": 55_919_384,
                "_metrics": {},
                "_ops": 239.037,
                "_file_size": 224.2,
                "_docs": "Output i is COCO-Stuff label i + 1 (0 = unlabeled is ignored).",
            },
            license=(
                "MIT (the kazuto1011/deeplab-pytorch repository's licence; the training data, "
                "COCO-Stuff, has licences of its own)"
            ),
        ),
    )
}

#: The weights ``pretrained=True`` loads.
DEFAULT_WEIGHTS = "voc12"


def list_weights() -> list[str]:
    """Names of the registered weights, sorted."""
    return sorted(_REGISTRY)


def get_weights(name: str) -> Weights:
    """The registry entry ``name`` (``"DEFAULT"`` = :data:`DEFAULT_WEIGHTS`)."""
    if name == "DEFAULT":
        name = DEFAULT_WEIGHTS
    try:
        return _REGISTRY[name]
    except KeyError:
        raise ValueError(
            f"unknown weights {name!r}; available: {', '.join(list_weights())}, or a local "
            "file path, or 'hf-hub:<repo_id>[/<filename>]'"
        ) from None
