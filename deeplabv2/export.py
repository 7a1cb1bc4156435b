"""ONNX export: the network (optionally with multi-scale inputs) as one self-describing file.

The exported graph takes the network's own input -- ``(B, 3, H, W) float32`` BGR in 0..255 minus
the mean of the weights (``preprocessing`` in the metadata) -- for any batch size and any
``H, W`` at or above the minimum, and returns the logits at output stride 8, ``(B, C, h, w)``
with ``h = deeplabv2.models.output_size(H)``, or with ``probabilities=True`` the softmax of the
logits zoomed to ``(H, W)`` as the release does it (stretched to ``(H, W)``, corners aligned,
under a protocol with ``upsampling="stretch"``). BatchNorm is folded into the convolutions.
A protocol's ``resize_to`` (PIL bicubic, e.g. the UDA works' 1024x512) is not in the graph:
the metadata says to resize the image to it first, and to stretch the logits to the image's
own size (which the graph does not know, so ``probabilities=True`` is refused there).
The metadata (``metadata_props``) records the architecture, class names, preprocessing, test
protocol, scales and the library version. Needs ``pip install 'deeplabv2[export]'``.

:func:`export_onnx` (also :func:`deeplabv2.export_onnx`), and ``deeplabv2 export``.
"""

from __future__ import annotations

import contextlib
import copy
import io
import json
import logging
import os
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional, Union

import torch
import torch.nn.functional as F
from torch import nn

from ._files import atomic_write, check_destination
from .errors import ExportVerificationError
from .interp import upsample_logits
from .models import FrozenBatchNorm2d, fold_batchnorm
from .msc import MultiScale
from .protocol import protocol_of
from .version import __version__

__all__ = [
    "ExportReport",
    "ExportVerificationError",
    "check_opset",
    "export_onnx",
    "onnx_metadata",
    "require_extra",
    "supported_opsets",
]

INSTALL_HINT = "ONNX export needs onnx, onnxscript and onnxruntime: pip install 'deeplabv2[export]'"
#: The sizes the export is checked at: a square one and a batch of two non-square ones.
VERIFY_SHAPES = ((1, 3, 129, 129), (2, 3, 97, 161))


@dataclass(frozen=True)
class ExportReport:
    """What :func:`export_onnx` wrote and how well it reproduces the PyTorch model.

    Attributes:
        path: the ``.onnx`` file.
        opset: its ONNX opset.
        errors: per checked input shape, ``max |onnx - torch| / max |torch|`` (empty if not
            verified).
    """

    path: Path
    opset: int
    errors: tuple[tuple[tuple[int, ...], float], ...]

    @property
    def max_relative_error(self) -> Optional[float]:
        return max((e for _, e in self.errors), default=None)


class _Graph(nn.Module):
    """The exported computation: the network, optionally MSC, optionally the probabilities at
    the input's size (logits zoomed, or stretched: ``upsampling``)."""

    def __init__(self, network: nn.Module, probabilities: bool, upsampling: str = "zoom") -> None:
        super().__init__()
        self.network = network
        self.probabilities = probabilities
        self.upsampling = upsampling

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        logits = self.network(image)
        if not self.probabilities:
            return logits
        height, width = image.shape[-2:]
        if self.upsampling == "stretch":
            full = F.interpolate(logits, size=(height, width), mode="bilinear", align_corners=True)
        else:
            full = upsample_logits(logits, (height, width))
        return torch.softmax(full, dim=1)


def require_extra(verify: bool = True) -> Any:
    """The ``onnx`` module; ImportError naming the ``export`` extra when it (or, to ``verify``,
    onnxruntime) is not installed."""
    try:
        import onnx
        import onnxscript  # noqa: F401 - torch's exporter needs it

        if verify:
            import onnxruntime  # noqa: F401
    except ImportError as exc:
        raise ImportError(f"{INSTALL_HINT} ({exc})") from exc
    return onnx


def supported_opsets() -> range:
    """The ONNX opsets the installed exporter writes: from torchlib's (18: torch's dynamo
    exporter builds every graph at that opset and cannot convert it down; 7, 11, 17... came back
    as 18 without a word) up to the newest the installed ``onnx`` knows (converted by
    onnxscript, or beyond its converter's range by ONNX's own). The written file's opset is
    checked as well (:func:`export_onnx`)."""
    onnx = require_extra(verify=False)
    try:
        from torch.onnx._internal.exporter._constants import TORCHLIB_OPSET as lowest
    except ImportError:  # pragma: no cover - other torch versions
        lowest = 18
    return range(int(lowest), onnx.defs.onnx_opset_version() + 1)


def check_opset(opset: Optional[int], option: str = "opset=") -> None:
    """Refuse an opset the exporter cannot write (:func:`supported_opsets`); ``option`` is how
    the message names it (``"--opset "`` on the command line)."""
    if opset is None:
        return
    opsets = supported_opsets()
    if opset not in opsets:
        import onnxscript

        raise ValueError(
            f"{option}{opset} cannot be written: the installed exporter (torch "
            f"{torch.__version__.split('+')[0]}, onnxscript {onnxscript.__version__}) writes "
            f"ONNX opsets {opsets[0]} to {opsets[-1]} only; leave it out for its default"
        )


def onnx_metadata(
    model: nn.Module, msc: Optional[Sequence[float]], probabilities: bool
) -> dict[str, str]:
    """The ``metadata_props`` of an exported model (all values strings; JSON where structured)."""
    protocol = protocol_of(model)
    upsampled = {"zoom": "zoomed by 8 (corners aligned)",
                 "stretch": "stretched to (H, W) (bilinear, corners aligned)"}  # fmt: skip
    output = (
        f"probabilities (B, C, H, W): softmax of the logits {upsampled[protocol.upsampling]}"
        if probabilities
        else "logits (B, C, h, w) at output stride 8: h = (((H - 1) // 2 + 1) pooled) // 2 + 1"
    )
    resize: dict[str, Any] = {}
    if protocol.resize_to is not None:
        width, height = protocol.resize_to
        resize = {
            "resize_to": [width, height],
            "resize": f"first resize the uint8 RGB image to {width}x{height} (width x height) "
            "with PIL's bicubic filter (Image.BICUBIC), then BGR minus the mean; stretch the "
            "logits to the image's own size (bilinear, align_corners=True) before the argmax",
        }
    return {
        "deeplabv2.version": __version__,
        "deeplabv2.architecture": str(getattr(model, "architecture", None) or "custom"),
        "deeplabv2.num_classes": str(model.num_classes),
        "deeplabv2.class_names": json.dumps(list(getattr(model, "class_names", ()))),
        "deeplabv2.preprocessing": json.dumps(
            {
                "layout": "NCHW",
                "dtype": "float32",
                "channels": "BGR",
                "range": "0..255",
                "subtract_mean_bgr": list(protocol.mean_bgr),
                "pad_to": protocol.pad_to,
                "min_side": _min_side(model, msc),
                **resize,
            }
        ),
        "deeplabv2.msc_scales": json.dumps(list(msc) if msc else []),
        "deeplabv2.output": output,
        "deeplabv2.protocol": json.dumps(protocol.as_dict()),
        "deeplabv2.source": getattr(getattr(model, "pretrained_info", None), "source", ""),
    }


def _min_side(model: nn.Module, msc: Optional[Sequence[float]]) -> int:
    if msc:
        return MultiScale(model, msc).min_input_size()
    return int(getattr(model, "min_input_size", 8))


def export_onnx(
    model: nn.Module,
    path: Union[str, os.PathLike],
    *,
    msc: Union[None, bool, Sequence[float]] = None,
    probabilities: bool = False,
    opset: Optional[int] = None,
    verify: bool = True,
    tolerance: float = 1e-4,
    force: bool = False,
) -> ExportReport:
    """Export a DeepLab network to ONNX, check it in onnxruntime, write it atomically.

    Args:
        model: a DeepLab network (any of :mod:`deeplabv2.models`), with its weights.
        path: the ``.onnx`` file to write (refused if it exists, unless ``force``).
        msc: multi-scale inputs with max fusion inside the graph: None (the default) or True
            for the weights' protocol scales (0.5 and 0.75 for the release's weights, as
            ``deeplabv2.Segmenter`` runs them), False or ``()`` for the input alone, or the
            extra scales.
        probabilities: output the softmax at the input's size instead of stride-8 logits
            (refused under a protocol with ``resize_to``: its logits are stretched to the
            original image's size, which the graph does not see).
        opset: the ONNX opset, one of :func:`supported_opsets` (default: the exporter's); any
            other is refused before anything is done, and the file's opset is checked.
        verify: run the file in onnxruntime at :data:`VERIFY_SHAPES` and compare with PyTorch
            before writing it; :class:`ExportVerificationError` above ``tolerance`` (maximum
            absolute difference relative to the largest PyTorch output).
        force: overwrite ``path``.

    Returns:
        An :class:`ExportReport` with the relative error at each checked shape.
    """
    protocol = protocol_of(model)
    if probabilities and protocol.resize_to is not None:
        width, height = protocol.resize_to
        raise ValueError(
            f"probabilities=True cannot follow this protocol: the input is the image resized "
            f"to {width}x{height}, and the logits are stretched to the original image's size, "
            "which the graph does not know; export the logits (probabilities=False, no "
            "--probabilities) and stretch them to the image (bilinear, align_corners=True), as "
            "the deeplabv2.preprocessing metadata says"
        )
    onnx = require_extra(verify)
    check_opset(opset)
    target = check_destination(Path(path), force, ".onnx")
    scales = _scales(model, msc)
    graph = _Graph(_exported_network(model, scales), probabilities, protocol.upsampling).eval()
    min_side = _min_side(model, scales)
    metadata = onnx_metadata(model, scales, probabilities)

    def write(tmp: str) -> None:
        proto = _onnx_proto(graph, min_side, opset)
        for key, value in metadata.items():
            entry = proto.metadata_props.add()
            entry.key, entry.value = key, value
        proto.doc_string = (
            f"DeepLab v2 ({metadata['deeplabv2.architecture']}) exported by deeplabv2 "
            f"{__version__}; see the deeplabv2.* metadata for input and output"
        )
        opsets.append(_written_opset(proto, opset))
        onnx.save_model(proto, tmp)
        if verify:
            errors.extend(_verify(tmp, graph, tolerance))

    errors: list[tuple[tuple[int, ...], float]] = []
    opsets: list[int] = []
    atomic_write(target, write, force=force)
    return ExportReport(target, opsets[0], tuple(errors))


def _scales(
    model: nn.Module, msc: Union[None, bool, Sequence[float]]
) -> Optional[tuple[float, ...]]:
    """The extra input scales ``msc`` asks for: the protocol's (None, True), these, or none."""
    if msc is None or msc is True:
        return tuple(protocol_of(model).scales) or None
    if msc:
        return tuple(float(s) for s in msc)
    return None


def _exported_network(model: nn.Module, scales: Optional[tuple[float, ...]]) -> nn.Module:
    """A float32 CPU copy of the network, BatchNorm folded, in multi-scale when ``scales``."""
    network = copy.deepcopy(model).float().cpu().eval()
    if any(isinstance(m, FrozenBatchNorm2d) for m in network.modules()):  # ResNet; VGG has none
        network = fold_batchnorm(network, inplace=True)
    if scales:
        network = MultiScale(network, scales, mode=protocol_of(model).msc_mode).eval()
    return network


def _onnx_proto(graph: _Graph, min_side: int, opset: Optional[int]) -> Any:
    """The ``onnx.ModelProto`` of ``graph``, for any batch and any size from ``min_side``."""
    batch = torch.export.Dim("batch", min=1)
    height = torch.export.Dim("height", min=min_side)
    width = torch.export.Dim("width", min=min_side)
    example = torch.zeros(1, 3, max(min_side, 65), max(min_side, 65))
    with _quiet():
        program = torch.onnx.export(
            graph,
            (example,),
            dynamo=True,
            input_names=["image"],
            output_names=["probabilities" if graph.probabilities else "logits"],
            dynamic_shapes={"image": {0: batch, 2: height, 3: width}},
            opset_version=opset,
            external_data=False,
            verbose=False,
        )
    assert program is not None  # dynamo=True always returns the program
    proto = program.model_proto
    dims = proto.graph.input[0].type.tensor_type.shape.dim
    if any(not dims[i].dim_param for i in (0, 2, 3)):
        raise ExportVerificationError(
            "the exporter fixed the input's batch or size instead of keeping them dynamic "
            f"({[d.dim_param or d.dim_value for d in dims]}): the file was not written"
        )
    return proto


def _written_opset(proto: Any, opset: Optional[int]) -> int:
    """The model's ONNX opset; an error if it is not the one asked for (an exporter that
    cannot convert may keep its own opset without a word)."""
    written = [op.version for op in proto.opset_import if op.domain in ("", "ai.onnx")]
    if opset is not None and written != [opset]:
        raise ExportVerificationError(
            f"asked for opset {opset}, the exporter wrote opset "
            f"{', '.join(map(str, written))}: the file was not written"
        )
    return written[0]


def _verify(path: str, graph: nn.Module, tolerance: float) -> list[tuple[tuple[int, ...], float]]:
    import onnxruntime

    session = onnxruntime.InferenceSession(path, providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    generator = torch.Generator().manual_seed(0)
    errors: list[tuple[tuple[int, ...], float]] = []
    for shape in VERIFY_SHAPES:
        x = torch.randn(shape, generator=generator) * 60.0
        with torch.no_grad():
            expected = graph(x).numpy()
        got = session.run(None, {name: x.numpy()})[0]
        if got.shape != expected.shape:
            raise ExportVerificationError(
                f"the exported graph gives shape {got.shape} for input {shape}, PyTorch "
                f"{expected.shape}"
            )
        error = float(abs(got - expected).max() / max(float(abs(expected).max()), 1e-12))
        if not error <= tolerance:
            raise ExportVerificationError(
                f"onnxruntime differs from PyTorch by {error:.2e} (relative) at input {shape}, "
                f"above the tolerance {tolerance:g}: the file was not written"
            )
        errors.append((shape, error))
    return errors


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """The exporter's progress lines and warnings (e.g. about torchvision ops) are noise here."""
    loggers = [logging.getLogger(name) for name in ("torch.onnx", "torch.export", "onnxscript")]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
            warnings.simplefilter("ignore")
            yield
    finally:
        for logger, level in zip(loggers, levels):
            logger.setLevel(level)
