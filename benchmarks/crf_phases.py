"""Where the torch CRF backend's time goes: lattice construction and one mean-field iteration,
phase by phase, on the CPU or a GPU, then the busiest operators of one full call.

Same input and settings as ``benchmarks/crf.py`` (500x375 photograph, 21 classes, DeepLab v2
ResNet-101 VOC settings), ``--batch`` copies of it. Each phase is timed on its own (median of
``--runs`` after one warm-up, the device synchronised around it); "full CRF" is one whole call
of ``--iterations`` iterations. On CUDA the same rows are measured twice, with the lattice's
NVRTC kernel (``deeplabv2.crf.lattice.cuda_spmm``) and with cuSPARSE, and the largest difference
of their marginals is printed.

    python benchmarks/crf_phases.py [--device cuda] [--batch 10] [--runs 5] [--top 25]
"""

from __future__ import annotations

import argparse
from typing import Callable

import torch
from crf import _inputs, _median_seconds  # benchmarks/crf.py

from deeplabv2.crf import DenseCRF, PermutohedralLattice
from deeplabv2.crf.backends.torch import mean_field_batch, side_by_side, smoothness_lattice
from deeplabv2.crf.lattice import cuda_spmm
from deeplabv2.crf.potentials import bilateral_features, unary_from_probs


def _median_ms(fn: Callable[[], object], runs: int, sync: Callable[[], None]) -> float:
    return 1000 * _median_seconds(fn, runs, sync)


def _phases(image: torch.Tensor, probs: torch.Tensor, runs: int, sync) -> list[tuple[str, float]]:
    """``(phase, ms per batch)`` rows for the construction and one iteration."""
    params = DenseCRF().params
    b, c, h, w = probs.shape

    def smoothness() -> PermutohedralLattice:  # built anew, not taken from the cache
        return smoothness_lattice.__wrapped__(
            ((h, w),), params.pos_xy_std, params.pos_w, probs.device
        )

    def appearance() -> PermutohedralLattice:
        feats = bilateral_features(image, params.bi_xy_std, params.bi_rgb_std)
        return PermutohedralLattice(feats).symmetric_normalized(params.bi_w)

    pos, bi = smoothness(), appearance()
    unary = unary_from_probs(probs).permute(0, 2, 3, 1).reshape(b, h * w, c)
    q = torch.softmax(-unary, dim=-1)
    message = side_by_side(pos, q) + bi.filter(q)
    return [
        ("smoothness lattice (1 image, shared)", _median_ms(smoothness, runs, sync)),
        ("appearance lattice", _median_ms(appearance, runs, sync)),
        ("smoothness filter", _median_ms(lambda: side_by_side(pos, q), runs, sync)),
        ("appearance filter", _median_ms(lambda: bi.filter(q), runs, sync)),
        ("softmax update", _median_ms(lambda: torch.softmax(message - unary, -1), runs, sync)),
        ("full CRF", _median_ms(lambda: mean_field_batch(image, probs, params), runs, sync)),
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument(
        "--top", type=int, default=25, help="operators listed by the profiler (0: no profile)"
    )
    args = parser.parse_args()
    device = torch.device(args.device)
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)

    rgb, coarse = _inputs(21)
    image = torch.from_numpy(rgb).permute(2, 0, 1).expand(args.batch, 3, 375, 500).to(device)
    probs = torch.from_numpy(coarse).expand(args.batch, -1, -1, -1).contiguous().to(device)
    params = DenseCRF().params

    variants = [("", None)]
    if device.type == "cuda":
        variants = [("NVRTC kernel", cuda_spmm.spmm), ("cuSPARSE", lambda matrix, dense: None)]
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU"
    print(
        f"torch CRF phases, 500x375, 21 classes, batch {args.batch}, {name}, torch "
        f"{torch.__version__}, {torch.get_num_threads()} CPU threads, median of {args.runs}"
    )
    results, outputs = {}, []
    original = cuda_spmm.spmm
    try:
        with torch.no_grad():
            for label, spmm in variants:
                cuda_spmm.spmm = spmm
                results[label] = _phases(image, probs, args.runs, sync)
                outputs.append(mean_field_batch(image, probs, params).cpu())
    finally:
        cuda_spmm.spmm = original
    labels = list(results)
    print(f"{'phase':<38}" + "".join(f"{(label or 'ms / batch'):>16}" for label in labels))
    for i, (phase, _) in enumerate(results[labels[0]]):
        print(f"{phase:<38}" + "".join(f"{results[label][i][1]:>16.2f}" for label in labels))
    if len(outputs) > 1:
        print(f"max |dQ| between the variants: {float((outputs[0] - outputs[1]).abs().max()):.1e}")

    if not args.top:
        return
    activities = [torch.profiler.ProfilerActivity.CPU]
    if device.type == "cuda":
        activities.append(torch.profiler.ProfilerActivity.CUDA)
    with torch.no_grad(), torch.profiler.profile(activities=activities) as prof:
        mean_field_batch(image, probs, params)
        sync()
    sort_by = "self_device_time_total" if device.type == "cuda" else "self_cpu_time_total"
    print(prof.key_averages().table(sort_by=sort_by, row_limit=args.top, max_name_column_width=60))


if __name__ == "__main__":
    main()
