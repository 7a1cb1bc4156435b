"""The GPU check: on a machine with CUDA, run the CUDA tests and the CRF (with its phases),
model and evaluation benchmarks, print each one's output, then one table of what ran, how long
and how it ended.

    python benchmarks/gpu_check.py [--quick] [--log FILE]
                                   [--steps tests crf phases model eval profile]

``--quick`` uses fewer timed runs and images (about 3 minutes on an H100 machine instead of 6).
Exit status 0 only if every step succeeded. Figures go into ``docs/benchmarks.md`` with the GPU's
name, which the first lines print.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path
from typing import Optional

import torch
from crf import native_backends  # benchmarks/crf.py

ROOT = Path(__file__).resolve().parent.parent
STEPS = ["tests", "crf", "phases", "model", "eval", "profile"]


def steps(quick: bool) -> list[tuple[str, list[str]]]:
    runs = "3" if quick else "5"
    py = sys.executable
    # the registry's CPU-only backends (numba): the others are timed on the GPU
    cpu_only = [b.name for b in native_backends("cpu") if not b.runs_on("cuda")]
    return [
        ("CUDA tests", [py, "-m", "pytest", "-q", "-rs", "-p", "no:cacheprovider", "-k", "cuda",
                        "tests"]),
        ("CRF benchmark", [py, "benchmarks/crf.py", "--runs", runs, "--batch", "10",
                           "--threads", "1", "4", "16", "--cpu-backends", *cpu_only]),
        ("CRF phases", [py, "benchmarks/crf_phases.py", "--device", "cuda", "--batch", "10",
                        "--runs", runs, "--top", "0"]),
        ("model benchmark", [py, "benchmarks/model.py", "--device", "cuda", "--runs",
                             "10" if quick else "20"]),
        ("eval benchmark", [py, "benchmarks/eval.py", "--device", "cuda", "--images",
                            "16" if quick else "48", "--batch", "8", "--runs", "2"]),
        ("eval profile", [py, "benchmarks/eval.py", "--device", "cuda", "--profile", "--compile",
                          "--images", "32" if quick else "96", "--batch", "8", "--runs", "2",
                          "--dtype", "bfloat16"]),
    ]  # fmt: skip


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--log", type=Path, help="also write all output to this file")
    parser.add_argument(
        "--steps", nargs="+", choices=STEPS, default=STEPS, help="steps to run (default: all)"
    )
    args = parser.parse_args()
    if not torch.cuda.is_available():
        print("no CUDA GPU: nothing to check", file=sys.stderr)
        return 2
    log = args.log.open("w") if args.log else None

    def emit(text: str) -> None:
        print(text, end="", flush=True)
        if log:
            log.write(text)
            log.flush()

    emit(
        f"GPU: {torch.cuda.get_device_name()}, torch {torch.__version__}, "
        f"CUDA {torch.version.cuda}, Python {sys.version.split()[0]}\n"
    )
    results: list[tuple[str, Optional[int], float]] = []
    for key, (name, command) in zip(STEPS, steps(args.quick)):
        if key not in args.steps:
            continue
        emit(f"\n=== {name}: {' '.join(command[1:])}\n")
        start = time.perf_counter()
        proc = subprocess.Popen(
            command, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
        )
        assert proc.stdout is not None
        for line in proc.stdout:
            emit(line)
        code = proc.wait()
        results.append((name, code, time.perf_counter() - start))

    emit(f"\n{'step':<18}{'status':<10}{'seconds':>8}\n")
    for name, code, seconds in results:
        emit(f"{name:<18}{'ok' if code == 0 else f'FAILED {code}':<10}{seconds:>8.1f}\n")
    if log:
        log.close()
    return 0 if all(code == 0 for _, code, _ in results) else 1


if __name__ == "__main__":
    sys.exit(main())
