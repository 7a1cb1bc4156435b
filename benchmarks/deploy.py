"""ONNX Runtime vs PyTorch on the CPU: DeepLab v2 ResNet-101 forward pass at 513x513.

Median wall time of ``--runs`` forward passes (after ``--warmup`` untimed ones), batch 1, random
weights (speed does not depend on them): PyTorch as built, PyTorch with BatchNorm folded, and
onnxruntime (CPU execution provider, all graph optimisations) on the file that
``deeplabv2.export_onnx`` writes (folded, dynamic shapes). Both use ``--threads`` threads.
Ratios are against plain PyTorch of the same run.

    python benchmarks/deploy.py [--runs 5] [--size 513] [--threads N]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from deeplabv2 import export_onnx
from deeplabv2.models import deeplab_v2_resnet101, fold_batchnorm


def median_ms(fn: Callable[[], object], runs: int, warmup: int) -> float:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return 1000 * statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--size", type=int, default=513)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    args = parser.parse_args()
    import onnxruntime

    torch.set_num_threads(args.threads)
    model = deeplab_v2_resnet101(num_classes=21).eval()
    folded = fold_batchnorm(model)
    x = torch.randn(1, 3, args.size, args.size) * 60
    with tempfile.TemporaryDirectory() as tmp:
        report = export_onnx(model, Path(tmp) / "deeplabv2.onnx")
        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = args.threads
        session = onnxruntime.InferenceSession(
            str(report.path), options, providers=["CPUExecutionProvider"]
        )
        feed = {"image": x.numpy()}
        with torch.no_grad():
            rows = [
                ("PyTorch", median_ms(lambda: model(x), args.runs, args.warmup)),
                ("PyTorch, folded", median_ms(lambda: folded(x), args.runs, args.warmup)),
                ("onnxruntime", median_ms(lambda: session.run(None, feed), args.runs, args.warmup)),
            ]
            error = np.abs(session.run(None, feed)[0] - model(x).numpy()).max()
            error /= np.abs(model(x).numpy()).max()
    print(
        f"DeepLab v2 ResNet-101 forward, 1x3x{args.size}x{args.size}, {args.threads} threads, "
        f"median of {args.runs}; torch {torch.__version__}, onnxruntime {onnxruntime.__version__}"
    )
    print(f"{'runtime':<18}{'ms':>10}{'vs PyTorch':>12}")
    for name, ms in rows:
        print(f"{name:<18}{ms:>10.1f}{rows[0][1] / ms:>11.2f}x")
    print(f"onnxruntime vs PyTorch: max relative error {error:.1e}")


if __name__ == "__main__":
    main()
