"""Named pretrained weights: where they come from, what they predict, how they were evaluated.

Each entry is described once: its network (``architecture``, a builder name) and ``tag``, its
classes, its sources, its test protocol (:class:`EvalProtocol`), its reported metrics with their
source, and a runnable preprocessing transform (:meth:`Weights.transforms`). Full names are
``"<architecture>.<tag>"`` (``"deeplab_v2_vgg16.voc12"``); a bare tag means the ResNet-101's
(``"voc12"`` = ``"deeplab_v2_resnet101.voc12"``).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Optional

from ..data.classes import COCOSTUFF_CLASSES, VOC_CLASSES
from ..data.transforms import CAFFE_MEAN_BGR, CaffePreprocess

__all__ = [
    "DEFAULT_ARCHITECTURE",
    "DEFAULT_WEIGHTS",
    "PORT_PROTOCOL",
    "RELEASE_PROTOCOL",
    "EvalProtocol",
    "Weights",
    "get_weights",
    "list_weights",
]

#: The network a bare weights name (no ``<architecture>.`` prefix) belongs to.
DEFAULT_ARCHITECTURE = "deeplab_v2_resnet101"

_MSC_MODES = ("caffe", "pytorch")


@dataclass(frozen=True)
class EvalProtocol:
    """How weights are evaluated, as their authors did it.

    Attributes:
        msc_mode: resizing of the multi-scale inputs: ``"caffe"`` (the release's ``Interp``
            layer) or ``"pytorch"`` (the PyTorch port's ``F.interpolate``); see
            :class:`deeplabv2.msc.MultiScale`.
        scales: the extra input scales of multi-scale testing (besides 1.0).
        pad_to: images are padded at the bottom/right with the mean to this square size
            (the release: 513), or None to run them at their own size (the PyTorch port).
        crf: the name of the dense CRF preset (:data:`deeplabv2.crf.PRESETS`).
        mean_bgr: the per-channel mean (B, G, R) subtracted from the input (the release's
            ImageNet mean; a network trained with another keeps it here).
    """

    msc_mode: str = "caffe"
    scales: tuple[float, ...] = (0.5, 0.75)
    pad_to: Optional[int] = 513
    crf: str = "resnet101-voc"
    mean_bgr: tuple[float, float, float] = CAFFE_MEAN_BGR

    def __post_init__(self) -> None:
        if self.msc_mode not in _MSC_MODES:
            raise ValueError(f"msc_mode must be one of {_MSC_MODES}, got {self.msc_mode!r}")
        if self.pad_to is not None and (self.pad_to < 1 or (self.pad_to - 1) % 8):
            raise ValueError(f"pad_to must be of the form 8k + 1 (e.g. 513), got {self.pad_to}")
        if len(self.mean_bgr) != 3:
            raise ValueError(f"mean_bgr must hold 3 values (B, G, R), got {self.mean_bgr}")

    def as_dict(self) -> dict[str, Any]:
        """The protocol as plain JSON-able values."""
        values = asdict(self)
        values["scales"] = list(self.scales)
        values["mean_bgr"] = list(self.mean_bgr)
        return values

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> EvalProtocol:
        """Inverse of :meth:`as_dict`; unknown keys are refused."""
        unknown = set(values) - {"msc_mode", "scales", "pad_to", "crf", "mean_bgr"}
        if unknown:
            raise ValueError(f"unknown test protocol keys {sorted(unknown)}")
        values = dict(values)
        for key in ("scales", "mean_bgr"):
            if key in values:
                values[key] = tuple(float(s) for s in values[key])
        return cls(**values)


#: The Caffe release's protocol: MSC with ``Interp`` sizes, 513x513 mean padding, its CRF.
RELEASE_PROTOCOL = EvalProtocol()
#: The VGG-16 release's: the same with the VGG-16 CRF settings.
VGG_RELEASE_PROTOCOL = EvalProtocol(crf="vgg16-voc")
#: The PyTorch port's (kazuto1011/deeplab-pytorch): its MSC resizing, images at their own size.
PORT_PROTOCOL = EvalProtocol(msc_mode="pytorch", pad_to=None)


@dataclass(frozen=True)
class Weights:
    """One set of pretrained weights.

    Attributes:
        architecture: the builder the weights are for (``deeplab_v2_resnet101``, ...).
        tag: the name within the architecture (``voc12``).
        num_classes: classes of the head, or None for a backbone-only initialisation.
        categories: class names, index = output channel.
        description: what the weights are.
        url: the original release file (a ``.caffemodel`` inside a zip, or a ``.pth``).
        url_member: the file inside ``url`` when it is a zip archive (a glob pattern where the
            exact name is not known, e.g. ``train_iter_*.caffemodel``).
        hf_repo, hf_filename, hf_revision: the converted safetensors on the Hugging Face Hub;
            ``hf_revision`` is the pinned 40-character commit, None until they are published
            (then the original source is used).
        sha256: checksum of the file the loader reads (the HF file when ``hf_revision`` is set,
            else the downloaded original); None where not known.
        backbone_only: the file's head is not this network's; only the rest is loaded.
        protocol: how the weights were evaluated (None for an initialisation).
        metrics: dataset -> reported scores, each with its ``source``.
        num_params: parameters of the model the weights fill (the backbone only, if so).
        ops: GMACs of one 513x513 forward pass (None for an initialisation).
        file_size: MB of the converted safetensors file.
        docs: how to use them.
        license: the licence of the weights as released.
        warning: shown whenever the weights are evaluated where they must not be.
        manual_download: ``url`` is a page, not a file: the file must be fetched by hand
            (and passed as a path, or put where the error message says).
    """

    architecture: str
    tag: str
    num_classes: Optional[int]
    categories: tuple[str, ...]
    description: str
    url: str
    url_member: Optional[str] = None
    hf_repo: str = ""
    hf_filename: str = "model.safetensors"
    hf_revision: Optional[str] = None
    sha256: Optional[str] = None
    backbone_only: bool = False
    protocol: Optional[EvalProtocol] = RELEASE_PROTOCOL
    metrics: dict[str, dict[str, Any]] = field(default_factory=dict)
    num_params: int = 0
    ops: Optional[float] = None
    file_size: float = 0.0
    docs: str = ""
    license: str = ""
    warning: Optional[str] = None
    manual_download: bool = False

    def __post_init__(self) -> None:
        if self.hf_revision is not None and len(self.hf_revision) != 40:
            raise ValueError(f"{self.name}: hf_revision must be a 40-character commit sha")

    @property
    def name(self) -> str:
        """The full registry name, ``<architecture>.<tag>``."""
        return f"{self.architecture}.{self.tag}"

    @property
    def meta(self) -> dict[str, Any]:
        """torchvision-style metadata, built from the fields (so each fact is stated once)."""
        return {
            "categories": self.categories,
            "num_params": self.num_params,
            "_metrics": self.metrics,
            "_ops": self.ops,
            "_file_size": self.file_size,
            "_docs": self.docs,
        }

    def transforms(self) -> CaffePreprocess:
        """The preprocessing the weights expect (RGB image -> BGR minus the mean), runnable."""
        return CaffePreprocess(mean_bgr=self.protocol.mean_bgr if self.protocol else CAFFE_MEAN_BGR)


_RESNET_ZIP = (
    "http://liangchiehchen.com/projects/released/deeplab_aspp_resnet101/prototxt_and_model.zip"
)
_VGG_ZIP = "http://liangchiehchen.com/projects/released/deeplab_aspp_vgg16/prototxt_and_model.zip"
_LARGEFOV = "http://www.cs.jhu.edu/~alanlab/ccvl/DeepLab-LargeFOV/train_iter_6000.caffemodel"
_VGG16_20M = "http://www.cs.jhu.edu/~alanlab/ccvl/init_models/vgg16_20M.caffemodel"
_PORT = "https://github.com/kazuto1011/deeplab-pytorch/releases/download/v1.0/"
_MSRA = "https://github.com/KaimingHe/deep-residual-networks"
_TORCHVISION = "https://download.pytorch.org/models/resnet101-63fe2227.pth"
_HF = "deeplabv2/"
_RELEASE_LICENSE = (
    "as released by the DeepLab authors (http://liangchiehchen.com/projects/DeepLab.html); "
    "check the release's terms before redistributing"
)
_PORT_LICENSE = (
    "MIT (the kazuto1011/deeplab-pytorch repository's licence; the training data, "
    "COCO-Stuff, has licences of its own)"
)
_PAPER = "Chen et al., DeepLab, TPAMI 2017 (arXiv:1606.00915)"
_PORT_README = "kazuto1011/deeplab-pytorch README (as quoted in this project's issue tracker)"
_VAL_WARNING = (
    "these weights were trained on VOC 2012 train+val: scores on VOC val are meaningless; use "
    "them for test-server submissions only, and 'voc12' for anything evaluated on val"
)

_ENTRIES = (
    Weights(
        architecture="deeplab_v2_resnet101",
        tag="voc12",
        num_classes=21,
        categories=VOC_CLASSES,
        description=(
            "DeepLab v2 ResNet-101 (MSC, ASPP-L) trained on PASCAL VOC 2012 trainaug "
            "(10,582 images) from the MS-COCO initialisation: the release's "
            "train_iter_20000.caffemodel (not train2_iter_20000, which also saw VOC val)."
        ),
        url=_RESNET_ZIP,
        url_member="train_iter_20000.caffemodel",
        hf_repo=_HF + "deeplab_v2_resnet101.voc12",
        metrics={
            "VOC2012-val": {
                "mIoU": 76.35,
                "mIoU+CRF": 77.69,
                "source": _PAPER + " (ResNet-101, MSC, COCO pretraining)",
            }
        },
        num_params=44_048_532,
        ops=188.886,
        file_size=176.7,
        docs="Evaluate with MSC (0.5, 0.75, 1.0) on 513x513 mean-padded inputs.",
        license=_RELEASE_LICENSE,
    ),
    Weights(
        architecture="deeplab_v2_resnet101",
        tag="voc12-trainval",
        num_classes=21,
        categories=VOC_CLASSES,
        description=(
            "DeepLab v2 ResNet-101 (MSC, ASPP-L) trained on VOC 2012 trainaug + val: the "
            "release's train2_iter_20000.caffemodel (the PyTorch port's "
            "deeplabv2_resnet101_msc-vocaug-20000.pth is a conversion of the same file). For "
            "VOC test-server submissions only."
        ),
        url=_RESNET_ZIP,
        url_member="train2_iter_20000.caffemodel",
        hf_repo=_HF + "deeplab_v2_resnet101.voc12-trainval",
        metrics={},
        num_params=44_048_532,
        ops=188.886,
        file_size=176.7,
        docs="Trained on VOC val: never evaluate it there.",
        license=_RELEASE_LICENSE,
        warning=_VAL_WARNING,
    ),
    Weights(
        architecture="deeplab_v2_resnet101",
        tag="coco-init",
        num_classes=None,
        categories=(),
        description=(
            "The release's MS-COCO pretrained ResNet-101 (init.caffemodel), the starting "
            "point of DeepLab v2's VOC training; backbone only, the head is initialised."
        ),
        url=_RESNET_ZIP,
        url_member="init.caffemodel",
        hf_repo=_HF + "deeplab_v2_resnet101.coco-init",
        backbone_only=True,
        protocol=None,
        num_params=42_500_160,
        file_size=170.5,
        docs="Backbone initialisation for training; pass num_classes.",
        license=_RELEASE_LICENSE,
    ),
    Weights(
        architecture="deeplab_v2_resnet101",
        tag="imagenet",
        num_classes=None,
        categories=(),
        description=(
            "MSRA's ResNet-101 trained on ImageNet (ResNet-101-model.caffemodel of He et al., "
            "the layer names DeepLab v2 keeps, plus fc1000): the initialisation for training "
            "without COCO (e.g. weakly supervised segmentation); backbone only."
        ),
        url=_MSRA,
        url_member="ResNet-101-model.caffemodel",
        hf_repo=_HF + "deeplab_v2_resnet101.imagenet",
        backbone_only=True,
        protocol=None,
        num_params=42_500_160,
        file_size=170.5,
        docs="Download ResNet-101-model.caffemodel from the page by hand (it is behind a "
        "OneDrive link); pass num_classes.",
        license="MIT (KaimingHe/deep-residual-networks); ImageNet's terms apply to the data",
        manual_download=True,
    ),
    Weights(
        architecture="deeplab_v2_resnet101",
        tag="torchvision-imagenet",
        num_classes=None,
        categories=(),
        description=(
            "torchvision's ResNet-101 ImageNet weights (IMAGENET1K_V1) mapped onto this network: "
            "an approximation, since torchvision puts the stride on the 3x3 convolution and "
            "DeepLab on the first 1x1; conv1 is rescaled to the Caffe input convention."
        ),
        url=_TORCHVISION,
        hf_repo=_HF + "deeplab_v2_resnet101.torchvision-imagenet",
        backbone_only=True,
        protocol=None,
        num_params=42_500_160,
        file_size=170.5,
        docs="Initialisation for training when the MSRA file cannot be had; pass num_classes.",
        license="BSD-3-Clause (torchvision); ImageNet's terms apply to the data",
    ),
    Weights(
        architecture="deeplab_v2_resnet101",
        tag="cocostuff164k",
        num_classes=182,
        categories=COCOSTUFF_CLASSES,
        description=(
            "DeepLab v2 ResNet-101 (MSC) trained on COCO-Stuff 164k by the PyTorch port "
            "kazuto1011/deeplab-pytorch (100k iterations), converted."
        ),
        url=_PORT + "deeplabv2_resnet101_msc-cocostuff164k-100000.pth",
        hf_repo=_HF + "deeplab_v2_resnet101.cocostuff164k",
        protocol=PORT_PROTOCOL,
        metrics={
            "COCO-Stuff-164k-val": {
                "pixel accuracy": 66.8,
                "mean accuracy": 51.2,
                "mIoU": 39.1,
                "FWIoU": 51.5,
                "source": _PORT_README,
            },
            "COCO-Stuff-164k-val+CRF": {
                "pixel accuracy": 67.6,
                "mean accuracy": 51.5,
                "mIoU": 39.7,
                "FWIoU": 52.3,
                "source": _PORT_README,
            },
        },
        num_params=55_919_384,
        ops=239.037,
        file_size=224.2,
        docs="Output i is COCO-Stuff label i (0..181, 255 ignored) of the 164k PNG labels.",
        license=_PORT_LICENSE,
    ),
    Weights(
        architecture="deeplab_v2_resnet101",
        tag="cocostuff10k",
        num_classes=182,
        categories=COCOSTUFF_CLASSES,
        description=(
            "DeepLab v2 ResNet-101 (MSC) trained on COCO-Stuff 10k by the PyTorch port "
            "kazuto1011/deeplab-pytorch (20k iterations), converted."
        ),
        url=_PORT + "deeplabv2_resnet101_msc-cocostuff10k-20000.pth",
        hf_repo=_HF + "deeplab_v2_resnet101.cocostuff10k",
        protocol=PORT_PROTOCOL,
        metrics={"COCO-Stuff-10k-test": {"mIoU": 34.8, "mIoU+CRF": 35.6, "source": _PORT_README}},
        num_params=55_919_384,
        ops=239.037,
        file_size=224.2,
        docs="Output i is COCO-Stuff label i (0..181, 255 ignored), as the port trains it.",
        license=_PORT_LICENSE,
    ),
    Weights(
        architecture="deeplab_v2_vgg16",
        tag="voc12",
        num_classes=21,
        categories=VOC_CLASSES,
        description=(
            "DeepLab v2 VGG-16 with ASPP-L trained on PASCAL VOC 2012 trainaug: the release's "
            "DeepLabv2_VGG16 model (the train_iter_*.caffemodel in its zip; the exact file "
            "name inside the archive could not be checked here)."
        ),
        url=_VGG_ZIP,
        url_member="train_iter_*.caffemodel",
        hf_repo=_HF + "deeplab_v2_vgg16.voc12",
        protocol=VGG_RELEASE_PROTOCOL,
        metrics={
            "VOC2012-val": {
                "mIoU": 68.96,
                "mIoU+CRF": 71.57,
                "source": _PAPER + " (VGG-16, DeepLab-ASPP-L)",
            }
        },
        num_params=37_877_652,
        ops=201.956,
        file_size=151.5,
        docs="Evaluate on 513x513 mean-padded inputs; the VGG-16 CRF preset.",
        license=_RELEASE_LICENSE,
    ),
    Weights(
        architecture="deeplab_v2_vgg16",
        tag="imagenet",
        num_classes=None,
        categories=(),
        description=(
            "The VGG-16 ImageNet initialisation of the DeepLab v2 VGG-16 release (init.caffemodel "
            "in its zip): conv1_1 .. fc7_i, no classifier."
        ),
        url=_VGG_ZIP,
        url_member="init.caffemodel",
        hf_repo=_HF + "deeplab_v2_vgg16.imagenet",
        backbone_only=True,
        protocol=None,
        num_params=37_791_552,
        file_size=151.2,
        docs="Initialisation for training; pass num_classes.",
        license=_RELEASE_LICENSE,
    ),
    Weights(
        architecture="deeplab_largefov_vgg16",
        tag="voc12",
        num_classes=21,
        categories=VOC_CLASSES,
        description=(
            "DeepLab-LargeFOV VGG-16 trained on PASCAL VOC 2012 trainaug: train_iter_6000."
            "caffemodel of the DeepLab-LargeFOV release (DeepLab v1, ICLR 2015). The DeepLab "
            "v2 paper's LargeFOV scores below were obtained with v2's training recipe."
        ),
        url=_LARGEFOV,
        hf_repo=_HF + "deeplab_largefov_vgg16.voc12",
        protocol=VGG_RELEASE_PROTOCOL,
        metrics={
            "VOC2012-val": {
                "mIoU": 65.76,
                "mIoU+CRF": 69.84,
                "source": _PAPER + " (VGG-16, DeepLab-LargeFOV, trained with the v2 recipe)",
            }
        },
        num_params=20_505_429,
        ops=128.585,
        file_size=82.0,
        docs="Evaluate on 513x513 mean-padded inputs; the VGG-16 CRF preset.",
        license=_RELEASE_LICENSE,
    ),
    Weights(
        architecture="deeplab_largefov_vgg16",
        tag="imagenet",
        num_classes=None,
        categories=(),
        description=(
            "vgg16_20M.caffemodel: VGG-16 trained on ImageNet with fc6/fc7 subsampled to "
            "1024 channels (fc6 3x3), the initialisation of DeepLab-LargeFOV; conv1_1 .. fc7."
        ),
        url=_VGG16_20M,
        hf_repo=_HF + "deeplab_largefov_vgg16.imagenet",
        backbone_only=True,
        protocol=None,
        num_params=20_483_904,
        file_size=81.9,
        docs="Initialisation for training (weakly supervised segmentation uses it); pass "
        "num_classes.",
        license=_RELEASE_LICENSE,
    ),
)

_REGISTRY: dict[str, Weights] = {entry.name: entry for entry in _ENTRIES}

#: The weights ``pretrained=True`` loads, by architecture.
DEFAULT_WEIGHTS: dict[str, str] = {
    "deeplab_v2_resnet101": "voc12",
    "deeplab_v2_vgg16": "voc12",
    "deeplab_largefov_vgg16": "voc12",
}


def list_weights(architecture: Optional[str] = None) -> list[str]:
    """Full names (``<architecture>.<tag>``) of the registered weights, sorted; only those of
    ``architecture`` if given."""
    return sorted(
        name
        for name, entry in _REGISTRY.items()
        if architecture is None or entry.architecture == architecture
    )


def _full_name(name: str, architecture: Optional[str]) -> str:
    architecture = architecture or DEFAULT_ARCHITECTURE
    if name == "DEFAULT":
        name = DEFAULT_WEIGHTS.get(architecture, "")
    return name if name in _REGISTRY else f"{architecture}.{name}"


def find_weights(name: str, architecture: Optional[str] = None) -> Optional[Weights]:
    """The entry ``name`` (full, or a tag of ``architecture``), or None if there is none."""
    entry = _REGISTRY.get(_full_name(name, architecture))
    if entry is not None and architecture is not None and entry.architecture != architecture:
        raise ValueError(
            f"the weights {entry.name} are for {entry.architecture}, not {architecture}"
        )
    return entry


def get_weights(name: str, architecture: Optional[str] = None) -> Weights:
    """The registry entry ``name``: a full name, or a tag (``"voc12"``, ``"DEFAULT"``) of
    ``architecture`` (default: DeepLab v2 ResNet-101).

    Raises:
        ValueError: no such entry (the message lists them).
    """
    entry = find_weights(name, architecture)
    if entry is None:
        raise ValueError(
            f"unknown weights {name!r}"
            + (f" for {architecture}" if architecture else "")
            + f"; available: {', '.join(list_weights(architecture))}, or a local file path, or "
            "'hf-hub:<repo_id>[/<filename>]'"
        )
    return entry
