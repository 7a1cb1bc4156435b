"""``deeplabv2 export``: a network to ONNX, verified (:func:`deeplabv2.export_onnx`)."""

from __future__ import annotations

import argparse

from .options import add_model_option, add_scale_options, scales_override
from .vocabulary import add_dialect_option, add_force_option, add_weights_option

__all__ = ["add_parser", "run"]


def add_parser(commands: argparse._SubParsersAction) -> None:
    """Register ``export`` and its options."""
    parser = commands.add_parser("export", help="export a network to ONNX (verified)")
    parser.add_argument("out", metavar="OUT", help="the .onnx file to write")
    add_weights_option(parser, required=True)
    parser.add_argument("--format", default="onnx", choices=("onnx",), help="the only one")
    add_scale_options(parser)
    parser.add_argument(
        "--probabilities", action="store_true", help="output softmax at input size, not logits"
    )
    parser.add_argument(
        "--opset",
        type=int,
        metavar="N",
        help="ONNX opset (default: the exporter's; one it cannot write is refused, with those "
        "it can)",
    )
    parser.add_argument("--no-verify", action="store_true", help="skip the onnxruntime check")
    add_force_option(parser)
    add_model_option(parser, "the network (default: from the weights)")
    add_dialect_option(parser)
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    """``deeplabv2 export``; the exit code."""
    from .._files import check_destination
    from ..export import VERIFY_SHAPES, check_opset, export_onnx, require_extra
    from ..models import load_model

    require_extra(verify=not args.no_verify)  # all before loading any weights
    check_opset(args.opset, "--opset ")
    check_destination(args.out, args.force, ".onnx")
    model = load_model(args.weights, model=args.model, dialect=args.dialect)
    report = export_onnx(
        model,
        args.out,
        msc=scales_override(args),
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
