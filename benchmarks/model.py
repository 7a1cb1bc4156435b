"""Forward latency and peak memory of DeepLab v2 ResNet-101: plain vs the inference fast paths.

Prints a table of medians over ``--runs`` timed forward passes (after ``--warmup`` untimed ones)
for 321x321 and 513x513 inputs, batch 1, with the speed-up against the plain model of the same
run:

* ``plain``: the model as built (frozen BatchNorm layers),
* ``folded``: :func:`deeplabv2.models.fold_batchnorm`,
* ``folded+cl``: folded, model and input in ``torch.channels_last``,
* ``folded+cl+compile``: the same under ``torch.compile`` (skipped with ``--no-compile``).

Peak memory is the growth over one forward pass: the CUDA allocator's peak on GPU; on CPU the
peak resident set (Linux ``VmHWM``, reset through ``/proc/self/clear_refs``), measured in a child
process started with glibc's ``MALLOC_MMAP_THRESHOLD_`` fixed at 1 MiB so that large tensors go
back to the system when freed and no earlier pass hides a later one's peak. The timings run with
the allocator's defaults.

    python benchmarks/model.py [--device cuda] [--runs 5] [--sizes 321 513] [--no-compile]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable

import torch

from deeplabv2.models import deeplab_v2_resnet101, fold_batchnorm

Forward = Callable[[torch.Tensor], torch.Tensor]


def _status_kib(field: str) -> int | None:
    status = Path("/proc/self/status")
    if not status.exists():
        return None
    for line in status.read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return None


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def build_variants(device: torch.device, compile_model: bool) -> dict[str, Forward]:
    torch.manual_seed(0)
    plain = deeplab_v2_resnet101().eval().to(device)
    folded = fold_batchnorm(plain)
    folded_cl = fold_batchnorm(plain).to(memory_format=torch.channels_last)
    variants: dict[str, Forward] = {
        "plain": plain,
        "folded": folded,
        "folded+cl": lambda x: folded_cl(x.contiguous(memory_format=torch.channels_last)),
    }
    if compile_model:
        compiled = torch.compile(folded_cl)
        variants["folded+cl+compile"] = lambda x: compiled(
            x.contiguous(memory_format=torch.channels_last)
        )
    return variants


def median_seconds(
    forward: Forward, x: torch.Tensor, device: torch.device, runs: int, warmup: int
) -> float:
    """Median seconds per ``forward(x)`` over ``runs`` passes after ``warmup`` passes."""
    with torch.inference_mode():
        for _ in range(warmup):
            forward(x)
        _sync(device)
        times = []
        for _ in range(runs):
            start = time.perf_counter()
            forward(x)
            _sync(device)
            times.append(time.perf_counter() - start)
    return statistics.median(times)


def peak_mib(forward: Forward, x: torch.Tensor, device: torch.device) -> float | None:
    """Memory growth (MiB) at the peak of one ``forward(x)``; None where it cannot be read."""
    with torch.inference_mode():
        forward(x)  # warm-up (compilation, allocator caches)
        _sync(device)
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)
            baseline = torch.cuda.memory_allocated(device)
        else:
            try:
                Path("/proc/self/clear_refs").write_text("5")
            except OSError:
                return None
            baseline = _status_kib("VmRSS")
        forward(x)
        _sync(device)
    if device.type == "cuda":
        return (torch.cuda.max_memory_allocated(device) - baseline) / 2**20
    peak = _status_kib("VmHWM")
    return None if peak is None or baseline is None else (peak - baseline) / 1024


def peaks(variants: dict[str, Forward], sizes: list[int], device: torch.device) -> dict:
    """``"size/variant" -> peak MiB`` (None for a variant that fails; the timing reports it)."""
    out: dict[str, float | None] = {}
    for size in sizes:
        x = torch.randn(1, 3, size, size, device=device) * 50
        for label, forward in variants.items():
            try:
                out[f"{size}/{label}"] = peak_mib(forward, x, device)
            except Exception:  # noqa: BLE001
                out[f"{size}/{label}"] = None
    return out


def cpu_peaks_in_child(args: argparse.Namespace) -> dict:
    """Run this script with ``--peaks-only`` in a fresh process with a fixed mmap threshold."""
    command = [sys.executable, __file__, "--peaks-only", "--device", "cpu", "--sizes"]
    command += [str(s) for s in args.sizes] + (["--no-compile"] if args.no_compile else [])
    env = {**os.environ, "MALLOC_MMAP_THRESHOLD_": str(1 << 20)}
    result = subprocess.run(command, env=env, capture_output=True, text=True, check=True)
    return json.loads(result.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--sizes", type=int, nargs="+", default=[321, 513])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--no-compile", action="store_true", help="skip torch.compile")
    parser.add_argument("--peaks-only", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    device = torch.device(args.device)
    variants = build_variants(device, not args.no_compile)
    if args.peaks_only:
        print(json.dumps(peaks(variants, args.sizes, device)))
        return

    results: dict[tuple[int, str], float | str] = {}
    for size in args.sizes:
        x = torch.randn(1, 3, size, size, device=device) * 50
        for label, forward in variants.items():
            try:
                results[size, label] = median_seconds(forward, x, device, args.runs, args.warmup)
            except Exception as error:  # noqa: BLE001 - report the variant that does not work
                results[size, label] = f"failed: {type(error).__name__}: {error}"[:120]
    memory = (
        cpu_peaks_in_child(args) if device.type == "cpu" else peaks(variants, args.sizes, device)
    )

    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU"
    print(
        f"device: {name}, torch {torch.__version__}, threads {torch.get_num_threads()}, "
        f"median of {args.runs} runs after {args.warmup} warm-up"
    )
    print("|   input | variant            |  median ms | speed-up | peak MiB |")
    print("|---------|--------------------|------------|----------|----------|")
    for size in args.sizes:
        reference = results[size, "plain"]
        for label in variants:
            seconds = results[size, label]
            if isinstance(seconds, str) or isinstance(reference, str):
                print(f"| {size:>7} | {label:<18} | {seconds}")
                continue
            peak = memory.get(f"{size}/{label}")
            peak_text = "n/a" if peak is None else f"{peak:.0f}"
            print(
                f"| {size:>7} | {label:<18} | {seconds * 1e3:>10.1f} | "
                f"{reference / seconds:>7.2f}x | {peak_text:>8} |"
            )


if __name__ == "__main__":
    main()
