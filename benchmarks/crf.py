"""Dense CRF speed: the pydensecrf reference vs the other registered backends (CPU, CUDA).

Median wall time per image (over ``--runs`` timed calls after one untimed warm-up) of the full
CRF -- lattice construction and ``--iterations`` mean-field iterations -- on a 500x375 photograph
(scikit-image's ``coffee``, cropped) with 21-class probabilities, at DeepLab v2's VOC settings.

Rows: pydensecrf (single-threaded C++); for each ``--threads`` count, the other installed
backends of the registry (``deeplabv2.crf.list_backends()``; numba and torch) on the CPU (batch 1,
and with ``--batch`` images for those that also run on GPUs); on CUDA, when a GPU exists, each
backend that computes there (torch) for batch 1 and ``--batch``, and the lattice construction
alone ("build": 0 iterations) for ``--batch``. Each
thread count runs in a fresh process, so that no thread pool of one setting lingers into the
next. Ratios are against pydensecrf of the same run (> 1 = faster); the last
column is the largest difference of any marginal from pydensecrf's on the same image.

The ragged rows (``--parts ragged``) time a batch of 8 VOC-size photographs of different sizes
(crops of scikit-image photos, 500x375 to 400x300) as one ragged call of ``DenseCRF`` (one
lattice per kernel for all 8, ``batched=True``) against the same 8 one at a time
(``batched=False``), per backend that has a ragged path, thread count and device; the reference
row is pydensecrf one at a time, and ``max |dQ|`` is over all 8 images. The cached smoothness
lattices are cleared before every call (in a pipeline a batch's sizes rarely come again).

    python benchmarks/crf.py [--runs 5] [--batch 10] [--iterations 10] [--threads 1 2]
                             [--cpu-backends numba torch] [--parts single ragged]
"""

from __future__ import annotations

import argparse
import itertools
import multiprocessing
import statistics
import time
from concurrent.futures import ProcessPoolExecutor
from typing import Callable, Optional

import numpy as np
import torch
from skimage import data as skdata

from deeplabv2.crf import Backend, DenseCRF, get_backend, list_backends
from deeplabv2.crf.backends import numba as numba_backend
from deeplabv2.crf.backends import torch as torch_backend
from deeplabv2.crf.synthetic import coarse_probs

Row = tuple[str, str, Optional[int], int, float, Optional[float]]  # + max |dQ|

#: the baseline of the ratios and of the differences
REFERENCE = "pydensecrf"


def native_backends(device_type: str) -> list[Backend]:
    """The registered backends other than the reference that compute on this device type."""
    return [b for b in list_backends() if b.name != REFERENCE and b.runs_on(device_type)]


def _median_seconds(fn: Callable[[], object], runs: int, sync: Callable[[], None]) -> float:
    fn()
    sync()
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        sync()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def _inputs(classes: int) -> tuple[np.ndarray, np.ndarray]:
    image = np.ascontiguousarray(skdata.coffee()[:375, :500])
    return image, coarse_probs(image, classes)


#: the ragged batch: (photo, rows, columns) crops of VOC sizes (width x height in the comments)
RAGGED = (
    ("coffee", slice(0, 375), slice(0, 500)),  # 500x375
    ("astronaut", slice(0, 500), slice(0, 375)),  # 375x500
    ("rocket", slice(0, 333), slice(0, 500)),  # 500x333
    ("immunohistochemistry", slice(0, 500), slice(0, 333)),  # 333x500
    ("rocket", slice(50, 331), slice(100, 600)),  # 500x281
    ("hubble_deep_field", slice(0, 500), slice(0, 366)),  # 366x500
    ("coffee", slice(20, 380), slice(50, 530)),  # 480x360
    ("chelsea", slice(0, 300), slice(0, 400)),  # 400x300
)


def _ragged_inputs(classes: int) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """8 photos of different sizes ``(H_i, W_i, 3) uint8`` and ``(C, H_i, W_i) float32``."""
    images = [np.ascontiguousarray(getattr(skdata, name)()[r, c]) for name, r, c in RAGGED]
    return images, [coarse_probs(im, classes, seed=i) for i, im in enumerate(images)]


def _ragged_reference(args: argparse.Namespace) -> tuple[float, list[np.ndarray]]:
    images, probs = _ragged_inputs(args.classes)
    crf = DenseCRF(iterations=args.iterations, backend=REFERENCE)
    seconds = _median_seconds(lambda: crf(images, probs), args.runs, _no_sync)
    return seconds / len(images), crf(images, probs)


def _ragged_rows(
    args: argparse.Namespace, threads: Optional[int], reference: Optional[list[np.ndarray]]
) -> list[Row]:
    """One ragged call against one image at a time: on the CPU at ``threads`` (in its own
    process), or on CUDA (``threads`` None) for the backends that compute there."""
    device = "cpu" if threads else "cuda"
    images, probs = _ragged_inputs(args.classes)
    ims = [torch.from_numpy(im).permute(2, 0, 1).to(device) for im in images]
    prs = [torch.from_numpy(p).to(device) for p in probs]
    backends = native_backends(device)
    if threads:
        torch.set_num_threads(threads)
        backends = [get_backend(name) for name in args.cpu_backends]
    sync = torch.cuda.synchronize if device == "cuda" else _no_sync
    rows: list[Row] = []
    for backend in (b for b in backends if b.available() and b.ragged is not None):
        crf = DenseCRF(iterations=args.iterations, backend=backend.name)
        for batched, mode in ((True, "ragged"), (False, "one by one")):
            with torch.no_grad():
                t = _median_seconds(
                    lambda c=crf, b=batched: c(ims, prs, batched=b), args.runs, sync
                )
                out = crf(ims, prs, batched=batched)
            diff = None
            if reference is not None:
                diff = max(_max_diff(q.cpu(), r) or 0.0 for q, r in zip(out, reference))
            rows.append((f"{backend.name}, {mode}", device, threads, len(ims), t / len(ims), diff))
    return rows


def _clear_smoothness_caches() -> None:
    """Forget the cached smoothness lattices of both native backends."""
    torch_backend.smoothness_lattice.cache_clear()
    numba_backend._smoothness.cache_clear()


def _no_sync() -> None:
    pass


def _reference(args: argparse.Namespace) -> tuple[float, np.ndarray]:
    image, probs = _inputs(args.classes)
    crf = DenseCRF(iterations=args.iterations, backend=REFERENCE)
    return _median_seconds(lambda: crf(image, probs), args.runs, _no_sync), crf(image, probs)


def _cpu_rows(args: argparse.Namespace, threads: int, reference: Optional[np.ndarray]) -> list[Row]:
    """The CPU rows at one thread count (runs in its own process)."""
    torch.set_num_threads(threads)
    image, probs = _inputs(args.classes)
    h, w = image.shape[:2]
    rows: list[Row] = []
    backends = [get_backend(name) for name in args.cpu_backends]
    for backend in (b for b in backends if b.available()):
        crf = DenseCRF(iterations=args.iterations, backend=backend.name)
        for batch in (1, args.batch) if backend.devices != ("cpu",) else (1,):
            im = torch.from_numpy(image).permute(2, 0, 1).expand(batch, 3, h, w)
            pr = torch.from_numpy(probs).expand(batch, -1, h, w).contiguous()
            with torch.no_grad():
                t = _median_seconds(lambda c=crf, i=im, p=pr: c(i, p), args.runs, _no_sync)
                diff = _max_diff(crf(im[:1], pr[:1])[0], reference)
            rows.append((backend.name, "cpu", threads, batch, t / batch, diff))
    return rows


def _cuda_rows(args: argparse.Namespace, reference: Optional[np.ndarray]) -> list[Row]:
    image, probs = _inputs(args.classes)
    h, w = image.shape[:2]
    rows: list[Row] = []
    # iterations=0 is the lattice construction alone (and one softmax): the rest is mean field
    runs = ((args.iterations, 1), (args.iterations, args.batch), (0, args.batch))
    for backend, (iterations, batch) in itertools.product(native_backends("cuda"), runs):
        crf = DenseCRF(iterations=iterations, backend=backend.name)
        im = torch.from_numpy(image).permute(2, 0, 1).expand(batch, 3, h, w).cuda()
        pr = torch.from_numpy(probs).expand(batch, -1, h, w).contiguous().cuda()
        with torch.no_grad():
            sync = torch.cuda.synchronize
            t = _median_seconds(lambda c=crf, i=im, p=pr: c(i, p), args.runs, sync)
            diff = _max_diff(crf(im[:1], pr[:1])[0].cpu(), reference) if iterations else None
        name = backend.name if iterations else f"{backend.name}, build"
        rows.append((name, "cuda", None, batch, t / batch, diff))
    return rows


def _max_diff(q: torch.Tensor, reference: Optional[np.ndarray]) -> Optional[float]:
    return None if reference is None else float(np.abs(q.numpy() - reference).max())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--batch", type=int, default=10)
    parser.add_argument("--iterations", type=int, default=10)
    parser.add_argument("--classes", type=int, default=21)
    parser.add_argument(
        "--parts", nargs="+", default=["single", "ragged"], choices=["single", "ragged"],
        help="the 500x375 image (and equal-size batches), the ragged batch of 8, or both",
    )  # fmt: skip
    parser.add_argument(
        "--threads", type=int, nargs="+", default=[1, torch.get_num_threads()],
        help="CPU thread counts of the native backends (default: 1 and all)",
    )  # fmt: skip
    cpu = [b.name for b in native_backends("cpu")]
    parser.add_argument(
        "--cpu-backends", nargs="*", default=cpu, choices=cpu,
        help=f"backends timed on the CPU besides {REFERENCE} (default: all: {', '.join(cpu)})",
    )  # fmt: skip
    args = parser.parse_args()

    if "single" in args.parts:
        _table(args, "500x375", _single_rows(args))
    if "ragged" in args.parts:
        _table(args, "ragged batch of 8 photos 500x375 .. 400x300", _all_ragged_rows(args))


def _single_rows(args: argparse.Namespace) -> list[Row]:
    rows: list[Row] = []
    reference = None
    if get_backend(REFERENCE).available():
        seconds, reference = _reference(args)
        rows.append((REFERENCE, "cpu", 1, 1, seconds, 0.0))
    spawn = multiprocessing.get_context("spawn")
    for threads in sorted(set(args.threads)):
        with ProcessPoolExecutor(1, mp_context=spawn) as pool:
            rows += pool.submit(_cpu_rows, args, threads, reference).result()
    if torch.cuda.is_available():
        rows += _cuda_rows(args, reference)
    return rows


def _all_ragged_rows(args: argparse.Namespace) -> list[Row]:
    rows: list[Row] = []
    reference = None
    if get_backend(REFERENCE).available():
        seconds, reference = _ragged_reference(args)
        rows.append((f"{REFERENCE}, one by one", "cpu", 1, len(RAGGED), seconds, 0.0))
    spawn = multiprocessing.get_context("spawn")
    for threads in sorted(set(args.threads)):
        with ProcessPoolExecutor(1, mp_context=spawn) as pool:
            rows += pool.submit(_ragged_rows, args, threads, reference).result()
    if torch.cuda.is_available():
        rows += _ragged_rows(args, None, reference)
    return rows


def _table(args: argparse.Namespace, what: str, rows: list[Row]) -> None:
    base = rows[0][4] if rows[0][0].startswith(REFERENCE) else None
    gpu = f", {torch.cuda.get_device_name()}" if torch.cuda.is_available() else ""
    print(
        f"DenseCRF {what}, {args.classes} classes, {args.iterations} iterations, median of "
        f"{args.runs}; torch {torch.__version__}{gpu}"
    )
    print(
        f"{'backend':<24}{'device':<8}{'threads':>8}{'batch':>6}{'ms/image':>11}"
        f"{'vs ' + REFERENCE:>15}{'max |dQ|':>11}"
    )
    for backend, device, threads, batch, t, diff in rows:
        ratio = f"{base / t:.2f}x" if base and diff is not None else "n/a"
        diff_text = "n/a" if diff is None else f"{diff:.1e}"
        print(
            f"{backend:<24}{device:<8}{threads or '-':>8}{batch:>6}{t * 1000:>11.1f}{ratio:>15}"
            f"{diff_text:>11}"
        )


if __name__ == "__main__":
    main()
