"""``deeplabv2 predict`` over a large folder: its memory stays flat; and what writing the outputs
in a pool of threads beside the network gains over writing them inline.

The real command runs (``deeplabv2.cli.main``: planning, the streaming pipeline, the write pool,
the atomic writes) with the network replaced by a tiny one (``build_segmenter`` patched here), so
that decoding and writing dominate. Inputs are generated into a temporary folder (deleted
afterwards). Three parts:

1. memory: ``--images`` (default 10,000) small JPEGs (64x48 .. 96x72, crops of scikit-image's
   photos) with ``--overlay --probs``; a thread samples the resident set of this process and of
   its children (the decoding workers, ``--decode-workers``) every 0.5 s from /proc; a table of
   images written vs RSS at 10%, 20%, ... 100%, the peak and the growth from 10% to 100%
   (``--images 0``: skipped);
2. wall time: ``--voc-images`` (default 20) VOC-size photos (500x375 and 375x500), ``--overlay
   --probs``, ``--writers 0`` (inline, in the main thread) against the pool, median of
   ``--runs``;
3. threads or processes: the same images' outputs encoded and written by ``writers.save_*``
   inline, in a thread pool and in a (started) process pool of the same size, which has to
   pickle every array across; median of ``--runs``.

    python benchmarks/predict_memory.py [--images 10000] [--decode-workers 1] [--writers 4]
                                        [--voc-images 20] [--runs 3]
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import threading
import time
from concurrent.futures import Executor, ProcessPoolExecutor, ThreadPoolExecutor
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from PIL import Image
from skimage import data as skdata
from torch import nn

from deeplabv2.cli import predict, writers
from deeplabv2.cli.main import main as cli
from deeplabv2.cli.write_pool import default_writers
from deeplabv2.data.images import load_image
from deeplabv2.segmenter import Segmenter

_PHOTOS = (skdata.astronaut, skdata.coffee, skdata.chelsea, skdata.rocket)


class TinyNet(nn.Module):
    """Output stride 8, 21 classes (VOC's, for the probabilities' size), next to no compute."""

    num_classes = 21

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.conv = nn.Conv2d(3, 21, 3, stride=8, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x / 50)


def _tiny_segmenter(*args: object) -> Segmenter:
    return Segmenter(TinyNet(), scales=(), pad_to=None, device="cpu")


def make_images(folder: Path, count: int, sizes: list[tuple[int, int]]) -> None:
    """``count`` JPEG crops of the photos, of the sizes ``(W, H)`` in turn."""
    folder.mkdir()
    photos = [np.asarray(Image.fromarray(photo()).convert("RGB")) for photo in _PHOTOS]
    rng = np.random.default_rng(0)
    for i in range(count):
        photo, (w, h) = photos[i % len(photos)], sizes[i % len(sizes)]
        if photo.shape[0] < h or photo.shape[1] < w:
            photo = np.asarray(Image.fromarray(photo).resize((max(w, 512), max(h, 512))))
        y, x = rng.integers(0, photo.shape[0] - h + 1), rng.integers(0, photo.shape[1] - w + 1)
        Image.fromarray(photo[y : y + h, x : x + w]).save(folder / f"{i:06d}.jpg", quality=90)


def _rss(pid: int) -> int:
    """Resident bytes of ``pid`` (0 if it is gone)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def _children(pid: int) -> list[int]:
    """Every live process below ``pid``."""
    found = []
    try:
        tasks = list(Path(f"/proc/{pid}/task").iterdir())
    except OSError:
        return found
    for task in tasks:
        try:
            kids = [int(p) for p in (task / "children").read_text().split()]
        except OSError:
            continue
        for kid in kids:
            found += [kid, *_children(kid)]
    return found


class Sampler(threading.Thread):
    """Every ``period`` s: (images written, own RSS, children's RSS), until stopped."""

    def __init__(self, done: Callable[[], int], period: float = 0.5) -> None:
        super().__init__(daemon=True)
        self.done, self.period = done, period
        self.samples: list[tuple[int, int, int]] = []
        self.stopping = threading.Event()

    def sample(self) -> None:
        pid = os.getpid()
        kids = sum(_rss(kid) for kid in _children(pid))
        self.samples.append((self.done(), _rss(pid), kids))

    def run(self) -> None:
        while not self.stopping.wait(self.period):
            self.sample()


def memory(tmp: Path, count: int, decode_workers: int, n: int) -> None:
    """Part 1: RSS over a run of ``count`` small images."""
    sizes = [(64 + 8 * (i % 5), 48 + 6 * (i % 5)) for i in range(5)]  # 64x48 .. 96x72
    start = time.perf_counter()
    make_images(tmp / "small", count, sizes)
    made = time.perf_counter() - start
    written, lock = [0], threading.Lock()
    real = writers.save_labels
    sampler = Sampler(lambda: written[0])

    def save_labels(*args: object) -> None:
        real(*args)
        with lock:
            written[0] += 1
            if written[0] == count:  # the 100% sample, while the decoding workers still run
                sampler.sample()

    writers.save_labels = save_labels
    sampler.start()
    start = time.perf_counter()
    argv = ["predict", str(tmp / "small"), "--out", str(tmp / "small_out"), "--quiet"]
    code = cli(
        [*argv, "--overlay", "--probs", "--workers", str(decode_workers), "--writers", str(n)]
    )
    took = time.perf_counter() - start
    sampler.stopping.set()
    sampler.join()
    writers.save_labels = real
    assert code == 0, f"predict exited with {code}"
    print(
        f"1. memory: predict --overlay --probs --workers {decode_workers} (decoding processes), "
        f"--writers {n}; {count} JPEGs 64x48..96x72 (made in {made:.0f} s), run took "
        f"{took:.0f} s ({count / took:.0f} images/s), {len(sampler.samples)} samples"
    )
    _memory_table(sampler.samples, count)


def _memory_table(samples: list[tuple[int, int, int]], count: int) -> None:
    mib = 1024**2
    print(f"{'done':>6}{'images':>9}{'main MiB':>10}{'children MiB':>14}{'total MiB':>11}")
    rows = []
    for tenth in range(1, 11):
        sample = min((s for s in samples if s[0] >= count * tenth / 10), key=lambda s: s[0])
        rows.append(sample)
        done, own, kids = sample
        print(f"{tenth * 10:>5}%{done:>9}{own / mib:>10.1f}{kids / mib:>14.1f}"
              f"{(own + kids) / mib:>11.1f}")  # fmt: skip
    peak = max(own + kids for _, own, kids in samples)
    last_worker = max((s for s in samples if s[2]), key=lambda s: s[0], default=rows[0])
    print(
        f"peak {peak / mib:.1f} MiB; growth from 10% to 100%: main process "
        f"{(rows[-1][1] - rows[0][1]) / mib:+.1f} MiB, decoding workers "
        f"{(last_worker[2] - rows[0][2]) / mib:+.1f} MiB (to their last sample at "
        f"{last_worker[0]} images: they exit once the last image is decoded)\n"
    )


def median_seconds(fn: Callable[[], object], runs: int) -> float:
    walls = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        walls.append(time.perf_counter() - start)
    return statistics.median(walls)


def wall_time(tmp: Path, count: int, runs: int) -> None:
    """Part 2: predict's wall time, writing inline against the pool."""
    make_images(tmp / "voc", count, [(500, 375), (375, 500)])
    counts = sorted({0, 2, default_writers(), 4})
    times, run = {}, [0]
    for n in counts:

        def once(n: int = n) -> None:
            run[0] += 1
            argv = ["predict", str(tmp / "voc"), "--out", str(tmp / f"voc_out{run[0]}")]
            assert cli([*argv, "--quiet", "--overlay", "--probs", "--writers", str(n)]) == 0

        times[n] = median_seconds(once, runs)
    print(
        f"2. wall time: predict --overlay --probs, {count} VOC-size photos (500x375, 375x500), "
        f"tiny network, {os.cpu_count()} CPUs, median of {runs} runs"
    )
    print(f"{'--writers':<22}{'s/run':>8}{'images/s':>10}{'vs inline':>11}")
    for n in counts:
        name = "0 (inline)" if n == 0 else f"{n}" + (" (default)" if n == default_writers() else "")
        print(f"{name:<22}{times[n]:>8.2f}{count / times[n]:>10.1f}{times[0] / times[n]:>10.2f}x")
    print()


def _save(item: tuple[Path, np.ndarray, np.ndarray, np.ndarray]) -> None:
    """One image's three outputs, as predict writes them."""
    out, rgb, labels, probs = item
    writers.save_labels(out.with_suffix(".png"), labels, True)
    writers.save_overlay(out.with_name(out.name + "_overlay.jpg"), rgb, labels, True)
    writers.save_probs(out.with_name(out.name + "_probs.npy"), probs, True)


def threads_or_processes(tmp: Path, runs: int) -> None:
    """Part 3: encoding and writing the same outputs in threads or processes."""
    segmenter, folder = _tiny_segmenter(), tmp / "encoded"
    folder.mkdir()
    items = []
    for path in sorted((tmp / "voc").iterdir()):
        rgb = load_image(path)
        prediction = segmenter.predict(rgb, return_probs=True)
        labels, probs = prediction.labels.numpy(), prediction.probs.numpy()
        items.append((folder / path.stem, rgb, labels, probs))
    n = default_writers()

    def pooled(pool: Executor) -> Callable[[], None]:
        return lambda: list(pool.map(_save, items))

    rows = [("inline", median_seconds(lambda: [_save(item) for item in items], runs))]
    with ThreadPoolExecutor(n) as threads:
        rows.append((f"{n} threads", median_seconds(pooled(threads), runs)))
    with ProcessPoolExecutor(n) as processes:
        list(processes.map(abs, range(n)))  # started before the clock
        rows.append((f"{n} processes", median_seconds(pooled(processes), runs)))
    print(
        f"3. threads or processes: writers.save_labels/save_overlay/save_probs of the "
        f"{len(items)} photos' outputs, median of {runs} runs"
    )
    print(f"{'':<14}{'s/run':>8}{'images/s':>10}{'vs inline':>11}")
    for name, seconds in rows:
        print(f"{name:<14}{seconds:>8.2f}{len(items) / seconds:>10.1f}"
              f"{rows[0][1] / seconds:>10.2f}x")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=10_000, help="small images (10,000)")
    parser.add_argument("--decode-workers", type=int, default=1, help="predict --workers (1)")
    parser.add_argument("--writers", type=int, default=default_writers(), help="part 1's")
    parser.add_argument("--voc-images", type=int, default=20, help="VOC-size images (20; 0: none)")
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    predict.build_segmenter = _tiny_segmenter
    with tempfile.TemporaryDirectory() as tmp:
        if args.images:
            memory(Path(tmp), args.images, args.decode_workers, args.writers)
        if args.voc_images:
            wall_time(Path(tmp), args.voc_images, args.runs)
            threads_or_processes(Path(tmp), args.runs)


if __name__ == "__main__":
    main()
