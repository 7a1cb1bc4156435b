"""What ``deeplabv2 predict`` and ``deeplabv2 eval`` share: their options, the checks run before
anything is loaded, the :class:`~deeplabv2.Segmenter` the options describe, and the batch size
and worker counts; plus the ``--model`` option of every verb that takes one."""

from __future__ import annotations

import argparse
import os
import sys
import warnings
from typing import TYPE_CHECKING, Any, Optional, Union

from ..crf import (  # the registry's names: no torch (crf/backends/builtin)
    BACKENDS,
    PRESETS,
    backend_help,
)
from ..data.constants import DEFAULT_MAX_PIXELS
from ..protocol import RELEASE_PROTOCOL
from .values import int_in
from .vocabulary import (
    add_crf_params_option,
    add_crf_workers_option,
    add_device_option,
    add_dialect_option,
    add_force_option,
    add_quiet_option,
    add_weights_option,
    add_workers_option,
)

if TYPE_CHECKING:
    import torch

    from ..segmenter import Segmenter

# torch, the models, the Segmenter... are imported by the functions that use them, not here:
# building the parser (deeplabv2 --help) loads no torch (tests/cli/test_startup.py)

__all__ = [
    "add_model_option",
    "add_options",
    "add_scale_options",
    "build_segmenter",
    "check",
    "protocol_overrides",
    "scales_override",
    "speed",
]

#: ``--dtype`` -> whether the Segmenter autocasts to the torch dtype of that name (float32: no)
_DTYPES = {"float32": False, "bfloat16": True, "float16": True}
#: ``--compile`` modes -> Segmenter's ``compile``
_COMPILE_MODES: dict[str, Union[bool, str]] = {
    "default": True,
    "reduce-overhead": "reduce-overhead",
    "max-autotune": "max-autotune",
    "max-autotune-no-cudagraphs": "max-autotune-no-cudagraphs",
}


def network_name(name: str) -> str:
    """An argparse ``type``: ``name`` if it is a network's builder name (``list_models()``),
    else a usage error listing them. The model registry (and torch) is loaded only when
    ``--model`` is given, so ``--help`` stays torch-free."""
    from ..models import list_models

    if name not in list_models():
        raise argparse.ArgumentTypeError(
            f"invalid choice: {name!r} (choose from {', '.join(list_models())})"
        )
    return name


def add_model_option(parser: argparse.ArgumentParser, help_text: str) -> None:
    """``--model NAME``, one of the networks' builder names."""
    parser.add_argument("--model", type=network_name, metavar="NAME", help=help_text)


def add_scale_options(group: argparse._ActionsContainer) -> None:
    """``--single-scale`` / ``--msc``: the one override of the weights' multi-scale testing
    every verb that runs the network shares (default: the weights' protocol)."""
    scales = group.add_mutually_exclusive_group()
    scales.add_argument(
        "--single-scale",
        action="store_true",
        help="the input at 1.0 only (default: the weights' protocol, MSC for the release's)",
    )
    scales.add_argument(
        "--msc",
        action="store_true",
        help="multi-scale inputs (1, 0.75, 0.5) even where the weights' protocol has none",
    )


def scales_override(args: argparse.Namespace) -> Optional[tuple[float, ...]]:
    """The extra scales the options ask for, or None to keep the weights' protocol."""
    if args.single_scale:
        return ()
    return RELEASE_PROTOCOL.scales if args.msc else None


def protocol_overrides(args: argparse.Namespace) -> dict[str, Any]:
    """What the user overrode of the weights' test protocol, and nothing else."""
    overrides: dict[str, Any] = {}
    scales = scales_override(args)
    if scales is not None:
        overrides["scales"] = scales
    if args.msc_mode is not None:
        overrides["msc_mode"] = args.msc_mode
    if args.pad_to != "auto":
        overrides["pad_to"] = args.pad_to
    if args.resize != "auto":
        overrides["resize_to"] = args.resize
    if args.upsampling is not None:
        overrides["upsampling"] = args.upsampling
    return overrides


def _pad_to(value: str) -> Union[int, None, str]:
    if value in ("auto", "none"):
        return None if value == "none" else value
    try:
        side = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected N (8k + 1, e.g. 513) or none, got {value!r}"
        ) from None
    if side < 1 or (side - 1) % 8:
        raise argparse.ArgumentTypeError(f"--pad-to must be of the form 8k + 1, got {side}")
    return side


def _resize(value: str) -> Union[tuple[int, int], None, str]:
    """``--resize``'s type: ``WIDTHxHEIGHT`` -> ``(width, height)``; ``none`` -> None;
    ``auto`` as it is (the weights' protocol)."""
    if value in ("auto", "none"):
        return None if value == "none" else value
    width, _, height = value.lower().partition("x")
    if not (width.isdigit() and height.isdigit()) or min(int(width), int(height)) < 1:
        raise argparse.ArgumentTypeError(
            f"expected WIDTHxHEIGHT (e.g. 1024x512), none or auto, got {value!r}"
        )
    return int(width), int(height)


def add_options(parser: argparse.ArgumentParser) -> None:
    """The options ``predict`` and ``eval`` share."""
    add_weights_option(parser, default="voc12")
    add_model_option(
        parser, "the network (default: the one the weights are for; a bare name is ResNet-101's)"
    )
    add_dialect_option(parser)
    _add_protocol_options(parser.add_argument_group("test protocol (default: the weights' own)"))
    _add_speed_options(parser.add_argument_group("speed"))
    parser.add_argument(
        "--tile-size", type=int_in(17), default=1025, metavar="N",
        help="tile images with a longer side",
    )  # fmt: skip
    parser.add_argument(
        "--tile-overlap",
        type=int_in(1),
        metavar="N",
        help="overlap of neighbouring tiles in pixels (default: min(256, tile size / 2))",
    )
    parser.add_argument(
        "--max-pixels",
        type=int_in(1),
        default=DEFAULT_MAX_PIXELS,
        metavar="N",
        help="refuse larger images (default: %(default)s, 25 megapixels)",
    )
    add_force_option(parser)
    add_quiet_option(parser)


def _add_protocol_options(group: argparse._ArgumentGroup) -> None:
    add_scale_options(group)
    group.add_argument(
        "--msc-mode",
        choices=("caffe", "pytorch"),
        help="resizing of the MSC inputs (default: the weights' protocol)",
    )
    group.add_argument(
        "--pad-to",
        type=_pad_to,
        default="auto",
        metavar="N|none",
        help="pad images with the mean to NxN (8k + 1; the release: 513), none: unpadded "
        "(default: %(default)s, the weights' protocol)",
    )
    group.add_argument(
        "--resize",
        type=_resize,
        default="auto",
        metavar="SIZE|none",
        help="resize every image to SIZE = WIDTHxHEIGHT (PIL bicubic) before the network, the "
        "results back at the image's size (the UDA works on Cityscapes: 1024x512; needs "
        "--pad-to none --upsampling stretch), none: at its own size (default: %(default)s, the "
        "weights' protocol)",
    )
    group.add_argument(
        "--upsampling",
        choices=("zoom", "stretch"),
        help="logits to the image: zoom by 8, corners aligned, then crop (the release); "
        "stretch: bilinear with aligned corners straight to the image's size (the UDA works) "
        "(default: the weights' protocol)",
    )
    group.add_argument("--flip", action="store_true", help="average with the flipped image")
    group.add_argument(
        "--crf", action="store_true", help="refine with the dense CRF (the weights' preset)"
    )
    add_crf_params_option(group, sorted(PRESETS), "the weights' preset; implies --crf")
    group.add_argument(
        "--crf-backend",
        default="auto",
        choices=BACKENDS,
        help=backend_help(),
    )


def _add_speed_options(group: argparse._ArgumentGroup) -> None:
    add_device_option(group)
    group.add_argument(
        "--batch-size",
        type=int_in(1),
        metavar="N",
        help="images through the network at once (default: 8 on a GPU, 1 on the CPU)",
    )
    add_workers_option(group, "the images", "on a GPU half the cores up to 8, on the CPU 0")
    add_crf_workers_option(
        group, "0 on a GPU or 2 cores or fewer, else about half the spare cores, up to 4"
    )
    group.add_argument(
        "--dtype", choices=tuple(_DTYPES), default="float32", help="autocast precision"
    )
    group.add_argument(
        "--compile",
        nargs="?",
        const="default",
        choices=_COMPILE_MODES,
        help="run the network as a torch.compile'd module with fixed shapes (needs padding; "
        "the first batch compiles); a mode: reduce-overhead for CUDA graphs (default: off; "
        "without a mode: default)",
    )


def _check_tiles(args: argparse.Namespace) -> None:
    """``--tile-size`` and ``--tile-overlap``, with multi-scale testing's minimum unless
    ``--single-scale`` (the weights' protocols all have MSC: its 0.5 branch of a tile must
    still be as large as the network's smallest input)."""
    from torch import nn

    from ..models import MIN_INPUT_SIZE
    from ..msc import MultiScale
    from ..tiling import OUTPUT_STRIDE, tile_overlap_for

    tile_overlap_for(args.tile_size, args.tile_overlap, names=("--tile-size", "--tile-overlap"))
    if args.single_scale or args.tile_size is None:
        return

    class _AnyNetwork(nn.Module):  # stands for the network where only its smallest input matters
        min_input_size = MIN_INPUT_SIZE

    network = _AnyNetwork()
    modes = (args.msc_mode,) if args.msc_mode else ("caffe", "pytorch")
    least = OUTPUT_STRIDE + max(
        MultiScale(network, RELEASE_PROTOCOL.scales, mode=mode).min_input_size() for mode in modes
    )
    if args.tile_size < least:
        raise ValueError(
            f"--tile-size {args.tile_size} is too small for multi-scale testing (the weights' "
            f"protocol, --msc): use at least {least}, or --single-scale"
        )


def check(args: argparse.Namespace) -> None:
    """Validate the options before anything is loaded (usage errors cost no model load)."""
    import torch

    from ..crf import DenseCRF

    _check_tiles(args)  # ranges are the parser's (values.py); here what options mean together
    if args.device is not None:
        try:
            device = torch.device(args.device)
        except RuntimeError:
            raise ValueError(
                f"--device {args.device!r} is not a device (cpu, cuda, cuda:N)"
            ) from None
        if device.type == "cuda" and not torch.cuda.is_available():
            raise ValueError(
                f"--device {args.device}: no CUDA GPU is available here; use --device cpu"
            )
    if args.crf_params is not None:
        DenseCRF.from_spec(args.crf_params)  # a missing or malformed file fails here
    if args.compile and args.pad_to is None and args.resize is None:  # else the Segmenter's
        raise ValueError("--compile needs fixed input shapes: drop --pad-to none or --resize none")
    if args.dtype == "float16" and (args.device or "cuda")[:4] != "cuda":
        raise ValueError("--dtype float16 needs a CUDA device; use bfloat16 on the CPU")


def build_segmenter(args: argparse.Namespace, device: torch.device) -> Segmenter:
    """Load the weights; the Segmenter the options describe, on ``device``: the weights' own
    protocol with what the user overrode."""
    import torch

    from ..models import load_model
    from ..segmenter import Segmenter
    from ..tiling import slow_tiling_warning

    model = load_model(args.weights, args.model, dialect=args.dialect)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="tile_size=")  # said below, in CLI words
        segmenter = Segmenter(
            model,
            crf=args.crf_params if args.crf_params is not None else (args.crf or None),
            crf_backend=args.crf_backend,
            flip=args.flip,
            device=device,
            dtype=getattr(torch, args.dtype) if _DTYPES[args.dtype] else None,
            tile_size=args.tile_size,
            tile_overlap=args.tile_overlap,
            max_pixels=args.max_pixels,
            progress=not args.quiet,
            compile=_COMPILE_MODES.get(args.compile, False),
            **protocol_overrides(args),
        )
    names = ("--tile-size ", "--pad-to none")
    slow = slow_tiling_warning(
        args.tile_size, segmenter.tile_overlap, segmenter.pad_to, names=names
    )
    if slow is not None:
        print(f"deeplabv2 {getattr(args, 'command', '')}: warning: {slow}", file=sys.stderr)
    return segmenter


def speed(args: argparse.Namespace, device: torch.device) -> dict[str, Any]:
    """Batch size and worker counts; on the CPU the network leaves the CRF workers' cores."""
    import torch

    from ..pipeline import default_crf_workers

    cuda = device.type == "cuda"
    workers = args.workers
    if workers is None:
        workers = min(8, (os.cpu_count() or 2) // 2) if cuda else 0
    crf_workers = args.crf_workers
    if crf_workers is None:
        crf_workers = default_crf_workers(device)
    if not cuda and (args.crf or args.crf_params) and crf_workers:
        torch.set_num_threads(max(1, (os.cpu_count() or 1) - crf_workers))
    return {"batch_size": args.batch_size or (8 if cuda else 1), "workers": workers,
            "crf_workers": crf_workers}  # fmt: skip
