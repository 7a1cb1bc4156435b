"""``deeplabv2 predict`` and ``deeplabv2 eval``: options, the Segmenter, and the runs.

Both run in one process or under ``torchrun`` (each rank on its own GPU, or the CPU, with its
shard of the images), batched, with decoding in worker processes.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any, Optional, Union

import numpy as np
import torch
from tqdm import tqdm

from . import _predict_io as io
from ._distributed import Ranks, start, stop
from ._pipeline import default_crf_workers, stream
from .crf import BACKENDS
from .data.images import load_image
from .errors import ImageError
from .segmenter import Segmenter, tile_overlap_for
from ._files import atomic_write, check_destination

__all__ = ["add_options", "run_eval", "run_predict"]

_DTYPES = {"float32": None, "bfloat16": torch.bfloat16, "float16": torch.float16}


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


def add_options(parser: argparse.ArgumentParser) -> None:
    """The options ``predict`` and ``eval`` share."""
    from .data.images import DEFAULT_MAX_PIXELS
    from .models import list_models

    parser.add_argument(
        "--weights",
        default="voc12",
        help="registry name (deeplabv2 weights), local file or hf-hub:... (voc12)",
    )
    parser.add_argument(
        "--model",
        choices=list_models(),
        help="the network (default: the one the weights are for; a bare name is ResNet-101's)",
    )
    protocol = parser.add_argument_group("test protocol (default: the weights' own)")
    protocol.add_argument("--msc", action="store_true", help="multi-scale inputs (1, 0.75, 0.5)")
    protocol.add_argument(
        "--msc-mode", choices=("caffe", "pytorch"), help="resizing of the MSC inputs"
    )
    protocol.add_argument(
        "--pad-to",
        type=_pad_to,
        default="auto",
        metavar="N|none",
        help="pad images with the mean to NxN (8k + 1; the release: 513), none: unpadded",
    )
    protocol.add_argument("--flip", action="store_true", help="average with the flipped image")
    protocol.add_argument("--crf", action="store_true", help="refine with the dense CRF")
    protocol.add_argument(
        "--crf-params",
        metavar="FILE|PRESET",
        help="the CRF's parameters: a JSON file (examples/tune_crf.py) or a preset "
        "(resnet101-voc, vgg16-voc); implies --crf (default: the weights' preset)",
    )
    protocol.add_argument(
        "--crf-backend",
        default="auto",
        choices=BACKENDS,
        help="auto: torch on a GPU; on the CPU numba, else pydensecrf, else torch",
    )
    speed = parser.add_argument_group("speed")
    speed.add_argument("--device", help="cpu, cuda, cuda:1... (default: cuda if available)")
    speed.add_argument(
        "--batch-size", type=int, help="images through the network at once (GPU 8, CPU 1)"
    )
    speed.add_argument(
        "--workers", type=int, help="image decoding processes (GPU: up to 8, CPU: 0)"
    )
    speed.add_argument(
        "--crf-workers",
        type=int,
        help="CRF processes on the CPU (0: inline; default: 0 on 2 cores or fewer, else about "
        "half the spare cores, up to 4)",
    )
    speed.add_argument(
        "--dtype", choices=tuple(_DTYPES), default="float32", help="autocast precision"
    )
    parser.add_argument(
        "--tile-size", type=int, default=1025, help="tile images with a longer side (1025)"
    )
    parser.add_argument(
        "--tile-overlap",
        type=int,
        help="overlap of neighbouring tiles in pixels (default: min(256, tile size / 2))",
    )
    parser.add_argument(
        "--max-pixels",
        type=int,
        default=DEFAULT_MAX_PIXELS,
        help=f"refuse larger images (default {DEFAULT_MAX_PIXELS:,}: 25 megapixels)",
    )
    parser.add_argument("--force", action="store_true", help="overwrite existing outputs")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")


def _check(args: argparse.Namespace) -> None:
    """Validate the options before anything is loaded (usage errors cost no model load)."""
    tile_overlap_for(args.tile_size, args.tile_overlap)
    if args.max_pixels is not None and args.max_pixels < 1:
        raise ValueError(f"--max-pixels must be positive, got {args.max_pixels}")
    for name in ("batch_size", "workers", "crf_workers"):
        value = getattr(args, name)
        if value is not None and value < (1 if name == "batch_size" else 0):
            raise ValueError(f"--{name.replace('_', '-')} must be positive, got {value}")
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
        from .crf import DenseCRF

        DenseCRF.from_spec(args.crf_params)  # a missing or malformed file fails here
    if args.dtype == "float16" and (args.device or "cuda")[:4] != "cuda":
        raise ValueError("--dtype float16 needs a CUDA device; use bfloat16 on the CPU")


def _segmenter(args: argparse.Namespace, device: torch.device) -> Segmenter:
    from .crf import DenseCRF
    from .models import load_model
    from .protocol import protocol_of

    model = load_model(args.weights, args.model)
    crf = None
    if args.crf_params is not None:
        crf = DenseCRF.from_spec(args.crf_params, backend=args.crf_backend)
    elif args.crf:
        crf = DenseCRF.from_preset(protocol_of(model).crf, backend=args.crf_backend)
    return Segmenter(
        model,
        scales=None if args.msc else (),
        msc_mode=args.msc_mode,
        pad_to=args.pad_to,
        flip=args.flip,
        crf=crf,
        device=device,
        dtype=_DTYPES[args.dtype],
        tile_size=args.tile_size,
        tile_overlap=args.tile_overlap,
        max_pixels=args.max_pixels,
        progress=not args.quiet,
    )


def _speed(args: argparse.Namespace, device: torch.device) -> dict[str, int]:
    """Batch size and worker counts; on the CPU the network leaves the CRF workers' cores."""
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


def per_image_failure(error: BaseException) -> Optional[str]:
    """What to report for an error that spoils one image only; None for anything else."""
    if isinstance(error, (ImageError, OSError)):
        return str(error)
    out_of_memory = isinstance(error, (MemoryError, torch.OutOfMemoryError)) or (
        isinstance(error, RuntimeError)
        and ("out of memory" in str(error) or "can't allocate memory" in str(error))
    )
    if out_of_memory:
        return "out of memory; try a smaller --tile-size, fewer scales (no --msc) or --device cpu"
    return None


class _Images:
    """``index -> (RGB, path)`` of the input files, for the decoding workers."""

    def __init__(self, paths: list[Path], max_pixels: Optional[int]) -> None:
        self.paths, self.max_pixels = paths, max_pixels

    def __call__(self, index: int) -> tuple[np.ndarray, str]:
        return load_image(self.paths[index], max_pixels=self.max_pixels), str(self.paths[index])


def _write(result: Any, files: list[Path], args: argparse.Namespace) -> None:
    labels = result.prediction.labels.numpy()
    io.save_labels(files[0], labels, args.force)
    if args.overlay:
        io.save_overlay(files[1], result.image, labels, args.force)
    if args.probs:
        io.save_probs(files[-1], result.prediction.probs.numpy(), args.force)


def _total(ranks: Ranks, value: int) -> int:
    """``value`` summed over the ranks."""
    if not ranks.distributed:
        return value
    import torch.distributed as dist

    tensor = torch.tensor([value], dtype=torch.int64)
    dist.all_reduce(tensor)
    return int(tensor.item())


def run_predict(args: argparse.Namespace) -> int:
    _check(args)
    paths = io.collect_images(args.inputs)
    if not paths:
        raise ValueError("no images found in the given files/folders")
    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise NotADirectoryError(f"--out {out} is a file; give a folder for the outputs")
    stems = [p.stem for p in paths]
    if len(set(stems)) != len(stems):
        raise ValueError("several inputs share a file name; their outputs would collide")
    outputs = [io.output_paths(out, p.stem, args.overlay, args.probs) for p in paths]
    for files in outputs:  # every output is checked before any is written
        for file in files:
            check_destination(file, args.force)
    ranks = start()
    try:
        if ranks.distributed:
            import torch.distributed as dist

            dist.barrier()  # no rank writes before every rank has checked
        device = ranks.device(args.device)
        segmenter = _segmenter(args, device)
        indices = ranks.shard(len(paths))
        failures = []
        with tqdm(
            total=len(indices),
            desc="predict",
            unit="image",
            disable=args.quiet or ranks.rank != 0,
        ) as bar:
            results = stream(
                segmenter,
                _Images(paths, args.max_pixels),
                indices,
                return_probs=args.probs,
                tolerant=(ImageError, OSError),
                on_network_error=lambda error: per_image_failure(error) is not None,
                progress=bar,
                **_speed(args, device),
            )
            for result in results:
                path = paths[result.index]
                error = result.error
                if error is None:
                    try:
                        _write(result, outputs[result.index], args)
                    except OSError as write_error:
                        error = write_error
                if error is not None:
                    reason = per_image_failure(error)
                    if reason is None:
                        raise error
                    failures.append(reason if str(path) in reason else f"{path}: {reason}")
        for failure in failures:
            print(f"deeplabv2 predict: skipped {failure}", file=sys.stderr)
        failed = _total(ranks, len(failures))
        if ranks.rank == 0:
            print(f"wrote {len(paths) - failed} of {len(paths)} segmentations to {out}")
        return 1 if failed else 0
    finally:
        stop(ranks)


def _percent(value: Optional[float]) -> str:
    return "   n/a" if value is None else f"{100 * value:6.2f}"


def run_eval(args: argparse.Namespace) -> int:
    from .data.voc import VOCSegmentation
    from .evaluate import evaluate

    _check(args)
    out = Path(args.out) if args.out else None
    if out is not None:
        check_destination(out, args.force)
    dataset = VOCSegmentation(args.data, args.split, limit=args.limit)
    ranks = start()
    try:
        device = ranks.device(args.device)
        segmenter = _segmenter(args, device)
        results = evaluate(
            segmenter,
            dataset,
            progress=not args.quiet,
            strict_labels=args.strict_labels,
            ranks=ranks,
            **_speed(args, device),
        )
        if ranks.rank != 0:
            return 0
        names = results["per_class_iou"]
        width = max(len(n) for n in names)
        for name, iou in names.items():
            print(f"{name:<{width}}  {_percent(iou)} %")
        for key in ("pixel_accuracy", "mean_accuracy", "mean_iou", "fw_iou"):
            print(f"{key:<{width}}  {_percent(results[key])} %")
        if out is not None:
            text = json.dumps(results, indent=2, allow_nan=False)
            atomic_write(out, lambda tmp: Path(tmp).write_text(text), force=args.force)
            print(f"wrote {out}")
        return 0
    finally:
        stop(ranks)
