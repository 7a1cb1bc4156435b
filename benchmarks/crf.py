"""Dense CRF speed: the pydensecrf reference vs the native torch backend.

Median wall time per image (over ``--runs`` timed calls after one untimed warm-up) of the full
CRF -- lattice construction and ``--iterations`` mean-field iterations -- on a 500x375 photograph
(scikit-image's ``coffee``, cropped) with 21-class probabilities, at DeepLab v2's VOC settings.
Rows: pydensecrf (CPU, one image at a time), torch on CPU for batch 1 and ``--batch``, and torch
on CUDA for batch 1 and ``--batch`` when a GPU exists. Ratios are against pydensecrf of the same
run (> 1 = faster than the reference).

    python benchmarks/crf.py [--runs 5] [--batch 10] [--iterations 10] [--threads N]
"""

from __future__ import annotations

import argparse
import statistics
import time
from typing import Callable

import numpy as np
import torch
from skimage import data as skdata

from deeplabv2.crf import DenseCRF
from deeplabv2.crf._pydensecrf import available as pydensecrf_available
from deeplabv2.crf.synthetic import coarse_probs


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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--batch", type=int, default=10)
    parser.add_argument("--iterations", type=int, default=10)
    parser.add_argument("--classes", type=int, default=21)
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    image = np.ascontiguousarray(skdata.coffee()[:375, :500])
    probs = coarse_probs(image, args.classes)
    h, w = image.shape[:2]
    rows: list[tuple[str, str, int, float]] = []

    def no_sync() -> None:
        pass

    if pydensecrf_available():
        crf = DenseCRF(iterations=args.iterations, backend="pydensecrf")
        t = _median_seconds(lambda: crf(image, probs), args.runs, no_sync)
        rows.append(("pydensecrf", "cpu", 1, t))
    crf = DenseCRF(iterations=args.iterations, backend="torch")
    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    for device in devices:
        sync = torch.cuda.synchronize if device == "cuda" else no_sync
        for batch in (1, args.batch):
            im = torch.from_numpy(image).permute(2, 0, 1).expand(batch, 3, h, w).to(device)
            pr = torch.from_numpy(probs).expand(batch, -1, h, w).contiguous().to(device)
            with torch.no_grad():
                t = _median_seconds(lambda im=im, pr=pr: crf(im, pr), args.runs, sync)
            rows.append(("torch", device, batch, t / batch))

    reference = rows[0][3] if rows[0][0] == "pydensecrf" else None
    print(
        f"DenseCRF {w}x{h}, {args.classes} classes, {args.iterations} iterations, "
        f"median of {args.runs}; torch {torch.__version__}, {torch.get_num_threads()} CPU threads"
    )
    print(f"{'backend':<12}{'device':<8}{'batch':>6}{'ms/image':>11}{'vs pydensecrf':>15}")
    for backend, device, batch, t in rows:
        ratio = f"{reference / t:.2f}x" if reference else "n/a"
        print(f"{backend:<12}{device:<8}{batch:>6}{t * 1000:>11.1f}{ratio:>15}")


if __name__ == "__main__":
    main()
