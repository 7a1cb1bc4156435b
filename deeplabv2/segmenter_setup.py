"""What a :class:`~deeplabv2.segmenter.Segmenter` is built from: its device and autocast
precision, its protocol (the model's, with the caller's overrides), its CRF and its network,
compiled for fixed shapes if asked."""

from __future__ import annotations

import dataclasses
import os
from typing import Any, Optional, Union, cast

import torch
from torch import nn

from .crf import PRESETS, DenseCRF
from .protocol import EvalProtocol, protocol_of

__all__ = [
    "PROTOCOL_OVERRIDES",
    "check_resize_to",
    "compiled",
    "device_and_dtype",
    "make_crf",
    "protocol_with",
]

#: What a Segmenter may override in the model's protocol (the CRF preset goes through ``crf``).
PROTOCOL_OVERRIDES = ("msc_mode", "scales", "pad_to", "mean_bgr", "resize_to", "upsampling")
# the overrides whose None is a value (no padding, no resizing), not "the protocol's"
_NONE_MEANS_OFF = ("pad_to", "resize_to")


def compiled(net: nn.Module, mode: Union[bool, str], protocol: EvalProtocol) -> nn.Module:
    """``net``, or ``net`` compiled for fixed shapes (``mode``: True or a ``torch.compile``
    mode); ValueError when the protocol neither pads nor resizes (every image would be a new
    shape)."""
    if mode is False:
        return net
    if protocol.pad_to is None and protocol.resize_to is None:
        raise ValueError(
            "compile needs fixed input shapes: pad every image (pad_to=513, the release's "
            "protocol) or resize it (resize_to=(1024, 512), the UDA protocol); otherwise each "
            "image size would compile anew"
        )
    return cast(nn.Module, torch.compile(net, dynamic=False, mode=None if mode is True else mode))


def device_and_dtype(
    model: nn.Module, device: Union[str, torch.device, None], dtype: Optional[torch.dtype]
) -> tuple[torch.device, Optional[torch.dtype]]:
    """The device (default: the model's) and the autocast dtype (None for float32)."""
    if device is None:
        first = next(iter(model.parameters()), None)
        device = first.device if first is not None else torch.device("cpu")
    device = torch.device(device)
    if dtype not in (None, torch.float32, torch.bfloat16, torch.float16):
        raise ValueError(f"dtype must be float32, bfloat16 or float16, got {dtype}")
    if dtype == torch.float16 and device.type != "cuda":
        raise ValueError("float16 autocast needs a CUDA device; use torch.bfloat16 on CPU")
    return device, None if dtype in (None, torch.float32) else dtype


def protocol_with(model: nn.Module, overrides: dict[str, Any], crf: Any) -> EvalProtocol:
    """The model's protocol with the caller's overrides (and a CRF preset named by ``crf``)."""
    unknown = sorted(set(overrides) - set(PROTOCOL_OVERRIDES))
    if unknown:
        raise TypeError(
            f"Segmenter got unexpected arguments {', '.join(unknown)}; the protocol's settings "
            f"are {', '.join(PROTOCOL_OVERRIDES)}"
        )
    changes = {k: v for k, v in overrides.items() if v is not None or k in _NONE_MEANS_OFF}
    if isinstance(crf, str) and crf in PRESETS:
        changes["crf"] = crf
    return dataclasses.replace(protocol_of(model), **changes)


def check_resize_to(protocol: EvalProtocol, min_size: int, tile_size: Optional[int]) -> None:
    """ValueError for a ``resize_to`` the network cannot take (a side under ``min_size``) or
    the tiles cannot hold (a resized image is segmented whole, never tiled)."""
    size = protocol.resize_to
    if size is None:
        return
    if min(size) < min_size:
        raise ValueError(
            f"resize_to={size} is too small: this network needs at least {min_size} pixels per side"
        )
    if tile_size is not None and max(size) > tile_size:
        raise ValueError(
            f"resize_to={size} is larger than tile_size {tile_size}: a resized image is "
            f"segmented whole, not in tiles; pass tile_size={max(size)} or more (or None)"
        )


def make_crf(crf: Any, backend: str, protocol: EvalProtocol) -> Optional[DenseCRF]:
    """The dense CRF: a given one, the protocol's preset (True), a preset or a file; or None."""
    if isinstance(crf, DenseCRF):
        if backend != "auto" and crf.backend != backend:
            raise ValueError(
                f"crf_backend={backend!r} does not apply to a DenseCRF made with backend "
                f"{crf.backend!r}; pass crf=True (or a preset) with crf_backend, or build the "
                "DenseCRF with the backend you want"
            )
        return crf
    if crf is True:
        return DenseCRF.from_preset(protocol.crf, backend=backend)
    if isinstance(crf, (str, os.PathLike)):
        return DenseCRF.from_spec(os.fspath(crf), backend=backend)
    if crf is None or crf is False:
        return None
    raise TypeError(f"crf must be a DenseCRF, True, a preset name or a file, got {crf!r}")
