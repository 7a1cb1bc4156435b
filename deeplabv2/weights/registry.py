"""Named pretrained weights: where they come from, what they predict, how they were evaluated.

Each entry is described once, in the file of its model family (``deeplabv2/models/
deeplab_*.py``), and registered here with :func:`register_weights`: its network
(``architecture``, a builder name) and ``tag``, its classes, its sources, its test protocol
(:class:`~deeplabv2.protocol.EvalProtocol`), its reported metrics with their source, its
training lineage and a runnable preprocessing transform (:meth:`Weights.transforms`). Full names
are ``"<architecture>.<tag>"`` (``"deeplab_v2_vgg16.voc12"``); a bare tag means the
ResNet-101's (``"voc12"`` = ``"deeplab_v2_resnet101.voc12"``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Optional

from ..data.transforms import CAFFE_MEAN_BGR, CaffePreprocess
from ..protocol import RELEASE_PROTOCOL, EvalProtocol
from .sources import HF_OWNER

__all__ = [
    "DEFAULT_ARCHITECTURE",
    "DEFAULT_WEIGHTS",
    "Weights",
    "find_weights",
    "get_weights",
    "list_weights",
    "register_weights",
]

#: The network a bare weights name (no ``<architecture>.`` prefix) belongs to.
DEFAULT_ARCHITECTURE = "deeplab_v2_resnet101"


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
        hf_repo, hf_filename, hf_revision: the converted safetensors on the Hugging Face Hub
            (``hf_repo`` default: ``<HF_OWNER>/<architecture>.<tag>``);
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
        lineage: the training stages the weights went through, oldest first, each naming its
            data and the kind of labels (``"MS-COCO (pixel labels)"``): what they have seen.
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
    lineage: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.hf_revision is not None and len(self.hf_revision) != 40:
            raise ValueError(f"{self.name}: hf_revision must be a 40-character commit sha")
        if not self.hf_repo:
            object.__setattr__(self, "hf_repo", f"{HF_OWNER}/{self.name}")

    @classmethod
    def initialisation(cls, architecture: str, tag: str, **fields: Any) -> Weights:
        """An entry for a backbone initialisation: no head, no classes, no test protocol
        (the head is built for the task: pass ``num_classes``)."""
        return cls(
            architecture=architecture,
            tag=tag,
            num_classes=None,
            categories=(),
            backbone_only=True,
            protocol=None,
            **fields,
        )

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


_REGISTRY: dict[str, Weights] = {}

#: The weights ``pretrained=True`` loads, by architecture (filled by :func:`register_weights`).
DEFAULT_WEIGHTS: dict[str, str] = {}


def register_weights(entry: Weights, *, default: bool = False) -> Weights:
    """Add ``entry`` to the registry (``default``: what ``pretrained=True`` loads for its
    architecture). A model family's file calls this for each of its weights.

    Raises:
        ValueError: an entry of the same full name is registered already.
    """
    if entry.name in _REGISTRY:
        raise ValueError(f"weights {entry.name!r} are registered already")
    _REGISTRY[entry.name] = entry
    if default:
        DEFAULT_WEIGHTS[entry.architecture] = entry.tag
    return entry


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
