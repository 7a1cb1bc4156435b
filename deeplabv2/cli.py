"""The ``deeplabv2`` command line: ``predict``, ``eval``, ``convert``, ``weights``, ``export``,
``publish``, ``demo``.

Also ``python -m deeplabv2 ...``, and ``torchrun --nproc_per_node K -m deeplabv2 predict|eval``.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import threading
from collections.abc import Sequence
from typing import Optional

from ._infer import add_options

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


def _export(args: argparse.Namespace) -> int:
    from .export import VERIFY_SHAPES, export_onnx, require_extra
    from .models import load_model

    require_extra(verify=not args.no_verify)  # before loading any weights
    model = load_model(args.weights, model=args.model)
    report = export_onnx(
        model,
        args.out,
        msc=args.msc,
        probabilities=args.probabilities,
        opset=args.opset,
        verify=not args.no_verify,
        force=args.force,
    )
    print(f"wrote {report.path} (ONNX opset {report.opset}, {model.num_classes} classes)")
    for shape, error in report.errors:
        print(f"  onnxruntime vs PyTorch at input {shape}: max relative error {error:.1e}")
    if not report.errors:
        print(f"  not verified (--no-verify); the check runs at {list(VERIFY_SHAPES)}")
    return 0


def _demo(args: argparse.Namespace) -> int:
    import tempfile

    from .demo import DEFAULT_WEIGHTS, _gradio, build_demo, example_photos

    _gradio()  # the extra, before anything else
    with tempfile.TemporaryDirectory(prefix="deeplabv2-demo-") as tmp:
        app = build_demo(
            args.weights or DEFAULT_WEIGHTS, examples=example_photos(tmp), device=args.device
        )
        app.launch(server_name=args.host, server_port=args.port, share=args.share)
    return 0


def _predict(args: argparse.Namespace) -> int:
    from ._infer import run_predict

    return run_predict(args)


def _eval(args: argparse.Namespace) -> int:
    from ._infer import run_eval

    return run_eval(args)


def _add_model_option(parser: argparse.ArgumentParser, help_text: str) -> None:
    from .models import list_models

    parser.add_argument("--model", choices=list_models(), help=help_text)


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
    add_options(predict)
    predict.set_defaults(run=_predict)

    evaluate = commands.add_parser("eval", help="mIoU on a VOC-format dataset")
    evaluate.add_argument("--data", required=True, help="dataset root (e.g. VOCdevkit/VOC2012)")
    evaluate.add_argument("--split", default="val", help="split name or list file (val)")
    evaluate.add_argument("--out", help="write the scores as JSON here")
    evaluate.add_argument("--limit", type=int, help="only the first N images")
    evaluate.add_argument(
        "--strict-labels",
        action="store_true",
        help="fail on label values that are neither a class nor 255 (default: warn once)",
    )
    add_options(evaluate)
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

    export = commands.add_parser("export", help="export a network to ONNX (verified)")
    export.add_argument("out", metavar="OUT.onnx", help="the file to write")
    export.add_argument("--weights", required=True, help="registry name, file or hf-hub:...")
    export.add_argument("--format", default="onnx", choices=("onnx",), help="onnx (the only one)")
    export.add_argument("--msc", action="store_true", help="multi-scale inputs inside the graph")
    export.add_argument(
        "--probabilities", action="store_true", help="output softmax at input size, not logits"
    )
    export.add_argument("--opset", type=int, help="ONNX opset (default: the exporter's)")
    export.add_argument("--no-verify", action="store_true", help="skip the onnxruntime check")
    export.add_argument("--force", action="store_true", help="overwrite OUT if it exists")
    _add_model_option(export, "the network (default: from the weights)")
    export.set_defaults(run=_export)

    demo = commands.add_parser("demo", help="a web demo in the browser (Gradio)")
    demo.add_argument(
        "--weights", action="append", help="weights name or file to offer (repeatable)"
    )
    demo.add_argument("--device", default="cpu", help="cpu (default), cuda, ...")
    demo.add_argument("--host", default="127.0.0.1", help="address to listen on (127.0.0.1)")
    demo.add_argument("--port", type=int, default=7860, help="port (7860)")
    demo.add_argument("--share", action="store_true", help="a public gradio.live link")
    demo.set_defaults(run=_demo)

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
