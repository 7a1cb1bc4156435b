"""Throughput of ``deeplabv2.score_folder``: images/s scoring a folder of label PNGs, 1 reading
process against N.

``--count`` pairs (default 10,582: VOC trainaug) of VOC-size label maps (500x375, 375x500,
500x333, ...) are generated in a temporary directory (deleted afterwards): ground truth as
palette PNGs with a few objects on background and 255 bands along their borders, like VOC's;
predictions as 8-bit grayscale PNGs of the same objects shifted a little, with 255 ("not sure")
in some places, like pseudo-labels. Every figure is the median of ``--runs`` passes over the
folder (after one warm-up pass, so the files are in the page cache: this measures decoding and
counting, not the disk); the ratio is against 1 worker in the same run. The CPU seconds (this
process and its workers) tell a lack of free cores from overhead: on a busy machine the wall
time of N workers stays that of 1 while their CPU time stays the same.

    python benchmarks/score.py [--count 10582] [--workers 1 2 8] [--runs 3]
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import resource
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from deeplabv2 import score_folder
from deeplabv2.data.classes import voc_palette
from deeplabv2.label_eval import default_workers

_SIZES = [(500, 375), (375, 500), (500, 333), (333, 500), (500, 281), (500, 366)]  # (W, H)


def _draw_pair(args: tuple[Path, int]) -> None:
    """One ground truth (palette) and one prediction (grayscale) of image ``index``."""
    folder, index = args
    rng = np.random.default_rng(index)
    size = _SIZES[index % len(_SIZES)]
    truth, prediction = Image.new("L", size, 0), Image.new("L", size, 0)
    draw_truth, draw_prediction = ImageDraw.Draw(truth), ImageDraw.Draw(prediction)
    for _ in range(rng.integers(1, 4)):
        w, h = size
        x0, y0 = int(rng.integers(0, w - 60)), int(rng.integers(0, h - 60))
        box = [x0, y0, x0 + int(rng.integers(40, w - x0)), y0 + int(rng.integers(40, h - y0))]
        label = int(rng.integers(1, 21))
        draw_truth.ellipse(box, fill=label, outline=255, width=5)
        dx, dy = rng.integers(-15, 16, 2)
        shifted = [box[0] + dx, box[1] + dy, box[2] + dx, box[3] + dy]
        wrong = label if rng.random() < 0.8 else int(rng.integers(1, 21))
        draw_prediction.ellipse(shifted, fill=wrong, outline=255, width=int(rng.integers(0, 12)))
    paletted = Image.frombytes("P", size, truth.tobytes())  # the same indices, with colours
    paletted.putpalette(voc_palette().reshape(-1).tolist())
    paletted.save(folder / "gt" / f"{index:06d}.png")
    prediction.save(folder / "pred" / f"{index:06d}.png")


def make_pairs(folder: Path, count: int, processes: int) -> None:
    (folder / "gt").mkdir()
    (folder / "pred").mkdir()
    with multiprocessing.get_context("spawn").Pool(processes) as pool:
        pool.map(_draw_pair, [(folder, i) for i in range(count)], chunksize=64)


def _cpu_seconds() -> float:
    """CPU time of this process and its finished children (the reading workers)."""
    own, children = (
        resource.getrusage(resource.RUSAGE_SELF),
        resource.getrusage(resource.RUSAGE_CHILDREN),
    )
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def seconds(fn, runs: int) -> tuple[float, float]:
    """Median wall and CPU seconds of ``runs`` calls, after one warm-up call."""
    fn()  # warm-up
    walls, cpus = [], []
    for _ in range(runs):
        start, cpu = time.perf_counter(), _cpu_seconds()
        fn()
        walls.append(time.perf_counter() - start)
        cpus.append(_cpu_seconds() - cpu)
    return statistics.median(walls), statistics.median(cpus)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=10582, help="image pairs (10582)")
    parser.add_argument(
        "--workers", type=int, nargs="+", help="worker counts to time (default: 1 and the default)"
    )
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    counts = args.workers or sorted({1, default_workers()})
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        start = time.perf_counter()
        make_pairs(folder, args.count, default_workers())
        made = time.perf_counter() - start
        rows = []
        for workers in counts:
            wall, cpu = seconds(
                lambda w=workers: score_folder(folder / "pred", folder / "gt", workers=w),
                args.runs,
            )
            rows.append((workers, wall, cpu))
        result = score_folder(folder / "pred", folder / "gt")
    print(
        f"score_folder(): {args.count} VOC-size label PNG pairs (generated in {made:.0f} s), "
        f"{os.cpu_count()} CPUs, median of {args.runs} passes; mIoU {result.mean_iou:.4f}, "
        f"{result.ignored_share:.1%} ignored"
    )
    print(f"{'workers':<10}{'s/pass':>10}{'images/s':>12}{'vs 1 worker':>14}{'CPU s/pass':>12}")
    reference = next((wall for workers, wall, _ in rows if workers == 1), rows[0][1])
    for workers, wall, cpu in rows:
        print(
            f"{workers:<10}{wall:>10.2f}{args.count / wall:>12.0f}{reference / wall:>13.2f}x"
            f"{cpu:>12.2f}"
        )


if __name__ == "__main__":
    main()
