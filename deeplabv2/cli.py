"""The ``deeplabv2`` command line: ``predict``, ``eval``, ``convert``, ``weights``, ``publish``."""

from __future__ import annotations

import argparse
import json
import signal
import sys
import threading
from collections.abc import Sequence
from typing import Optional

from .data.images import DEFAULT_MAX_PIXELS

__all__ = ["main"]


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # one line, exit code 2
        self.exit(2, f"{self.prog}: error: {message}\n")


def _convert(args: argparse.Namespace) -> int:
    from .convert import convert
    from .data.classes import resolve_class_names

    classes = resolve_class_names(args.classes) if args.classes else None
    path, metadata = convert(
        args.src,
        args.dst,
        model=args.model,
        backbone_only=args.backbone_only,
        classes=classes,
        force=args.force,
    )
    count = metadata["num_classes"]
    head = "backbone only" if count == "none" else f"{count} classes"
    print(f"wrote {path} ({metadata['architecture']}, {head}, from {metadata['source']})")
    if count != "none" and "classes" not in metadata:
        print(
            "note: the file names no classes, so none were recorded; pass --classes "
            "voc|cocostuff|FILE to record them",
            file=sys.stderr,
        )
    return 0


def _weights(args: argparse.Namespace) -> int:
    from .weights import get_weights, list_weights

    rows = []
    for name in list_weights(args.model):
        entry = get_weights(name)
        metrics = entry.meta.get("_metrics") or {}
        rows.append(
            {
                "name": name,
                "architecture": entry.architecture,
                "tag": entry.tag,
                "classes": entry.num_classes or "backbone",
                "source": entry.url_member or entry.url.rsplit("/", 1)[-1],
                "hub": f"{entry.hf_repo}@{entry.hf_revision or 'unpublished'}",
                "metrics": "; ".join(
                    f"{d}: " + ", ".join(f"{k} {v}" for k, v in m.items() if k != "source")
                    for d, m in metrics.items()
                ),
                "warning": entry.warning,
            }
        )
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    for row in rows:
        flag = "  [trained on VOC val: test server only]" if row["warning"] else ""
        print(f"{row['name']:<38} {row['classes']!s:<9} {row['source']:<48} {row['metrics']}{flag}")
    return 0


def _publish(args: argparse.Namespace) -> int:
    from .publish import publish

    plan = publish(
        args.name, args.src, args.out, repo_id=args.repo_id, upload=args.upload, force=args.force
    )
    if plan["uploaded"]:
        print(f"uploaded to https://huggingface.co/{plan['repo_id']} at {plan['revision']}")
        print(f"pin in the registry: hf_revision={plan['revision']!r}, sha256={plan['sha256']!r}")
    else:
        print(f"dry run: would upload to {plan['repo_id']}:")
        for name, path in plan["files"].items():
            print(f"  {name} <- {path}")
        print(f"  sha256 {plan['sha256']}; pass --upload to publish")
    return 0


def _check_inference_options(args: argparse.Namespace) -> None:
    """Validate the options before anything is loaded (usage errors cost no model load)."""
    import torch

    from .segmenter import tile_overlap_for

    tile_overlap_for(args.tile_size, args.tile_overlap)
    if args.max_pixels is not None and args.max_pixels < 1:
        raise ValueError(f"--max-pixels must be positive, got {args.max_pixels}")
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


def _segmenter(args: argparse.Namespace):
    import torch

    from . import models
    from .segmenter import Segmenter

    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    model = models.load_model(args.weights, args.model)
    crf = None
    if args.crf:
        from .crf import DenseCRF

        crf = DenseCRF(backend=args.crf_backend)
    return Segmenter(
        model,
        scales=(0.5, 0.75) if args.msc else (),
        flip=args.flip,
        crf=crf,
        device=device,
        tile_size=args.tile_size,
        tile_overlap=args.tile_overlap,
        max_pixels=args.max_pixels,
        progress=not args.quiet,
    )


def _per_image_failure(error: BaseException) -> Optional[str]:
    """What to report for an error that spoils one image only; None for anything else."""
    import torch

    from .errors import ImageError

    if isinstance(error, (ImageError, OSError)):
        return str(error)
    out_of_memory = isinstance(error, (MemoryError, torch.OutOfMemoryError)) or (
        isinstance(error, RuntimeError)
        and ("out of memory" in str(error) or "can't allocate memory" in str(error))
    )
    if out_of_memory:
        return "out of memory; try a smaller --tile-size, fewer scales (no --msc) or --device cpu"
    return None


def _predict(args: argparse.Namespace) -> int:
    from pathlib import Path

    from tqdm import tqdm

    from . import _predict_io as io
    from .data.images import load_image
    from .weights.files import check_destination

    _check_inference_options(args)
    paths = io.collect_images(args.inputs)
    if not paths:
        raise ValueError("no images found in the given files/folders")
    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise NotADirectoryError(f"--out {out} is a file; give a folder for the outputs")
    stems = [p.stem for p in paths]
    if len(set(stems)) != len(stems):
        raise ValueError("several inputs share a file name; their outputs would collide")
    outputs = {p: io.output_paths(out, p.stem, args.overlay, args.probs) for p in paths}
    for files in outputs.values():  # every output is checked before any is written
        for file in files:
            check_destination(file, args.force)
    segmenter = _segmenter(args)
    failures = []
    for path in tqdm(paths, desc="predict", unit="image", disable=args.quiet):
        try:
            rgb = load_image(path, max_pixels=args.max_pixels)
            prediction = segmenter.predict(rgb, return_probs=args.probs)
            labels = prediction.labels.numpy()
            io.save_labels(outputs[path][0], labels, args.force)
            if args.overlay:
                io.save_overlay(outputs[path][1], rgb, labels, args.force)
            if args.probs:
                io.save_probs(outputs[path][-1], prediction.probs.numpy(), args.force)
        except Exception as error:  # noqa: BLE001 - sorted by _per_image_failure
            reason = _per_image_failure(error)
            if reason is None:
                raise
            failures.append(reason if str(path) in reason else f"{path}: {reason}")
    done = len(paths) - len(failures)
    for failure in failures:
        print(f"deeplabv2 predict: skipped {failure}", file=sys.stderr)
    print(f"wrote {done} of {len(paths)} segmentations to {out}")
    return 1 if failures else 0


def _percent(value: Optional[float]) -> str:
    return "   n/a" if value is None else f"{100 * value:6.2f}"


def _eval(args: argparse.Namespace) -> int:
    from pathlib import Path

    from .data.voc import VOCSegmentation
    from .evaluate import evaluate
    from .weights.files import atomic_write, check_destination

    _check_inference_options(args)
    out = Path(args.out) if args.out else None
    if out is not None:
        check_destination(out, args.force)
    dataset = VOCSegmentation(args.data, args.split, limit=args.limit)
    segmenter = _segmenter(args)
    results = evaluate(
        segmenter,
        dataset,
        crf_workers=args.workers,
        progress=not args.quiet,
        strict_labels=args.strict_labels,
    )
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


def _add_model_option(parser: argparse.ArgumentParser, help_text: str) -> None:
    from .models import list_models

    parser.add_argument("--model", choices=list_models(), help=help_text)


def _add_inference_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--weights",
        default="voc12",
        help="registry name (deeplabv2 weights), local file or hf-hub:... (voc12)",
    )
    _add_model_option(
        parser, "the network (default: the one the weights are for; a bare name is ResNet-101's)"
    )
    parser.add_argument("--msc", action="store_true", help="multi-scale inputs 1, 0.75, 0.5")
    parser.add_argument("--flip", action="store_true", help="average with the flipped image")
    parser.add_argument("--crf", action="store_true", help="refine with the dense CRF")
    parser.add_argument(
        "--crf-backend", default="torch", choices=("torch", "pydensecrf"), help="CRF backend"
    )
    parser.add_argument("--device", help="cpu, cuda, cuda:1... (default: cuda if available)")
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


def build_parser() -> argparse.ArgumentParser:
    from .version import __version__

    parser = _Parser(prog="deeplabv2", description="DeepLab v2 (Caffe-faithful) in PyTorch.")
    parser.add_argument("--version", action="version", version=f"deeplabv2 {__version__}")
    parser.add_argument("--verbose", action="store_true", help="show tracebacks on errors")
    commands = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    predict = commands.add_parser("predict", help="segment images, write label PNGs")
    predict.add_argument("inputs", nargs="+", metavar="IMAGES_OR_DIRS")
    predict.add_argument("--out", required=True, help="output folder")
    predict.add_argument("--overlay", action="store_true", help="also write <name>_overlay.jpg")
    predict.add_argument("--probs", action="store_true", help="also write <name>_probs.npy")
    _add_inference_options(predict)
    predict.set_defaults(run=_predict)

    evaluate = commands.add_parser("eval", help="mIoU on a VOC-format dataset")
    evaluate.add_argument("--data", required=True, help="dataset root (e.g. VOCdevkit/VOC2012)")
    evaluate.add_argument("--split", default="val", help="split name or list file (val)")
    evaluate.add_argument("--out", help="write the scores as JSON here")
    evaluate.add_argument("--limit", type=int, help="only the first N images")
    evaluate.add_argument(
        "--workers", type=int, default=2, help="CRF worker processes (0: in the main process)"
    )
    evaluate.add_argument(
        "--strict-labels",
        action="store_true",
        help="fail on label values that are neither a class nor 255 (default: warn once)",
    )
    _add_inference_options(evaluate)
    evaluate.set_defaults(run=_eval)

    convert = commands.add_parser("convert", help="convert .caffemodel/.pth to .safetensors")
    convert.add_argument("src", help="a .caffemodel, .pth/.pt or .safetensors file")
    convert.add_argument("dst", help="the .safetensors file to write")
    convert.add_argument("--force", action="store_true", help="overwrite DST if it exists")
    convert.add_argument(
        "--backbone-only",
        action="store_true",
        help="keep all but the head (e.g. the release's init.caffemodel)",
    )
    convert.add_argument(
        "--classes", help="class names of the head: voc, cocostuff or a file (one per line)"
    )
    _add_model_option(convert, "the network (default: found from the file)")
    convert.set_defaults(run=_convert)

    weights = commands.add_parser("weights", help="list the pretrained weights")
    weights.add_argument("--json", action="store_true", help="print JSON")
    _add_model_option(weights, "only the weights of this network")
    weights.set_defaults(run=_weights)

    publish = commands.add_parser("publish", help="convert and upload weights to the HF Hub")
    publish.add_argument("name", help="registry name, e.g. voc12 or deeplab_v2_vgg16.voc12")
    publish.add_argument("src", help="the release file (e.g. train_iter_20000.caffemodel)")
    publish.add_argument("--out", required=True, help="directory for model.safetensors/README.md")
    publish.add_argument("--repo-id", help="Hub repository (default: the registry's)")
    publish.add_argument("--upload", action="store_true", help="really upload (default: dry run)")
    publish.add_argument("--force", action="store_true", help="overwrite files in --out")
    publish.set_defaults(run=_publish)
    return parser


class _Terminated(BaseException):
    """Raised in the main thread by SIGTERM, so that ``finally`` blocks clean up as on Ctrl-C."""


def _on_sigterm(signum: int, frame: object) -> None:
    raise _Terminated


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Run the command line; returns the exit code.

    0 ok, 1 failure, 2 usage error, 130 interrupted (Ctrl-C), 143 terminated (SIGTERM). An
    interrupted or terminated run removes its temporary files and leaves finished outputs.
    """
    parser = build_parser()
    args = parser.parse_args(argv)
    previous = None
    if threading.current_thread() is threading.main_thread():
        previous = signal.signal(signal.SIGTERM, _on_sigterm)
    try:
        return args.run(args)
    except KeyboardInterrupt:
        print("deeplabv2: interrupted", file=sys.stderr)
        return 130
    except _Terminated:
        print("deeplabv2: terminated", file=sys.stderr)
        return 143
    except Exception as error:  # noqa: BLE001 - one clear line unless --verbose
        if args.verbose:
            raise
        print(f"deeplabv2 {args.command}: error: {error}", file=sys.stderr)
        return 1
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


if __name__ == "__main__":
    sys.exit(main())
