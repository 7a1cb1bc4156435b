"""One entry of the weights registry (:class:`Weights`): a plain record that imports no torch,
so that the registry and its data (:mod:`.zoo`) load at once (``deeplabv2 weights``)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Optional

from ..data.constants import CAFFE_MEAN_BGR
from ..protocol import RELEASE_PROTOCOL, EvalProtocol
from .sources import HF_OWNER

if TYPE_CHECKING:
    from ..data.transforms import CaffePreprocess

__all__ = ["Weights"]


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
        dialect: the code base whose key names and computation the file follows, where its
            keys do not say it (``"adaptsegnet"``, ``"advent"``: docs/uda.md); None otherwise.
        model_args: the network's constructor arguments besides ``num_classes`` where they are
            not the builder's defaults (the UDA works' ``aux_head``, ``head_branches``).
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
    dialect: Optional[str] = None
    model_args: dict[str, Any] = field(default_factory=dict)

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
    def member_is_pattern(self) -> bool:
        """``url_member`` is a glob pattern (the member's exact name is decided at download)."""
        return self.url_member is not None and any(c in self.url_member for c in "*?[")

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
        """The preprocessing the weights expect (RGB image -> BGR minus the mean), runnable
        (imports torch: the entry itself does not)."""
        from ..data.transforms import CaffePreprocess

        return CaffePreprocess(mean_bgr=self.protocol.mean_bgr if self.protocol else CAFFE_MEAN_BGR)
