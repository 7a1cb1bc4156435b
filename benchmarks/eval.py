"""Throughput of the whole evaluation pipeline: images/s of ``deeplabv2.evaluate.evaluate``.

A VOC-format folder of real photographs at VOC sizes (scikit-image photos cropped to 500x375,
375x500, 500x333, ...; random labels) is generated in a temporary directory and evaluated with
DeepLab v2 ResNet-101 (random weights: speed does not depend on them) under the release's test
protocol (513x513 padding). Rows: single scale and MSC at batch 1 and ``--batch``, MSC + CRF
with the CRF inline and in ``--crf-workers`` processes (CPU) or on the GPU; on CUDA also
bfloat16 autocast, and the fraction of the GPU's bfloat16 peak that the network alone reaches
at ``--batch``. Every figure is the median of ``--runs`` passes over the folder (after one
warm-up pass); ratios are against the first row of the same run.

On the CPU the CRF workers need cores of their own: the pipelined row runs the network on the
cores they leave, and the analysis line compares it with the bound it should approach,
``max(network time, CRF time / workers)`` per image, from the network-only and CRF-only rows.

``--profile`` prints instead where the time of each image goes: every stage of the pipeline
(:mod:`deeplabv2.profiling`: decoding, copies, preprocessing, network, upsampling, CRF, arg-max,
scoring; on CUDA with the device synchronised around each stage) for single scale, MSC and MSC +
CRF, the bound those stages allow when they overlap perfectly (the busiest resource: the main
thread with the device, the decoding workers, the CRF workers), the time of the same
configuration without profiling (median of ``--runs``) and its ratio to the bound. PNG
encoding and writing, which ``deeplabv2 predict`` adds, is timed on the label maps. Without
decoding workers (the CPU default) "waiting for images" is the decoding itself. ``--compile``
adds the same configurations with the network compiled for fixed shapes
(``Segmenter(compile=True)``), against eager.

    python benchmarks/eval.py [--images 6] [--batch 4] [--runs 3] [--crf-workers 1]
    python benchmarks/eval.py --device cuda --images 64 --batch 16
    python benchmarks/eval.py --profile [--compile] [--device cuda --batch 8 --dtype bfloat16]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from skimage import data as skdata

from deeplabv2 import Segmenter
from deeplabv2.cli.writers import save_labels
from deeplabv2.data import VOCSegmentation
from deeplabv2.evaluate import evaluate
from deeplabv2.models import deeplab_v2_resnet101
from deeplabv2.profiling import STAGES, Profile

_SIZES = [(375, 500), (500, 375), (333, 500), (500, 333), (281, 500), (366, 500)]
#: Dense bfloat16 peak (TFLOP/s) of the GPUs this was run on, from their data sheets.
_PEAKS = {"H100": 989.4, "H200": 989.4, "A100": 312.0}
_GMACS_513 = 188.886  # one 513x513 forward pass (the registry's _ops)


def make_voc(root: Path, count: int) -> Path:
    photos = [skdata.astronaut(), skdata.coffee(), skdata.chelsea(), skdata.rocket()]
    rng = np.random.default_rng(0)
    (root / "JPEGImages").mkdir(parents=True)
    (root / "SegmentationClass").mkdir()
    (root / "ImageSets" / "Segmentation").mkdir(parents=True)
    names = []
    for i in range(count):
        h, w = _SIZES[i % len(_SIZES)]
        photo = np.asarray(Image.fromarray(photos[i % len(photos)]).resize((w, h)))
        name = f"2012_{i:06d}"
        Image.fromarray(photo).save(root / "JPEGImages" / f"{name}.jpg", quality=90)
        label = rng.integers(0, 21, (h, w)).astype(np.uint8)
        Image.fromarray(label, mode="L").save(root / "SegmentationClass" / f"{name}.png")
        names.append(name)
    (root / "ImageSets" / "Segmentation" / "val.txt").write_text("\n".join(names) + "\n")
    return root


def seconds(fn, runs: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--images", type=int, default=6)
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--workers", type=int, default=None, help="decoding processes")
    parser.add_argument("--crf-workers", type=int, default=1)
    parser.add_argument("--peak-tflops", type=float, help="bf16 peak (default: by GPU name)")
    parser.add_argument("--profile", action="store_true", help="time every stage (see above)")
    parser.add_argument("--compile", action="store_true", help="with --profile: also compiled")
    parser.add_argument("--dtype", choices=("float32", "bfloat16"), default="float32")
    args = parser.parse_args()
    device = torch.device(args.device)
    cuda = device.type == "cuda"
    workers = args.workers if args.workers is not None else (4 if cuda else 0)
    torch.manual_seed(0)
    model = deeplab_v2_resnet101().eval().to(device)
    if args.profile:
        profile_table(model, device, workers, args)
        return

    with tempfile.TemporaryDirectory() as tmp:
        data = VOCSegmentation(make_voc(Path(tmp) / "voc", args.images), "val")
        rows: list[tuple[str, float]] = []

        def row(name: str, *, scales=(), crf=None, batch=1, crf_workers=0, dtype=None):
            seg = Segmenter(model, scales=scales, crf=crf, device=device, dtype=dtype)

            def one_pass() -> None:
                evaluate(
                    seg, data, batch_size=batch, workers=workers, crf_workers=crf_workers,
                    progress=False,
                )  # fmt: skip
                if cuda:
                    torch.cuda.synchronize()

            per_image = seconds(one_pass, args.runs) / len(data)
            rows.append((name, per_image))
            return per_image

        single = row("single scale, batch 1")
        row(f"single scale, batch {args.batch}", batch=args.batch)
        msc = row("MSC, batch 1", scales=None)
        row(f"MSC, batch {args.batch}", scales=None, batch=args.batch)
        if cuda:
            row(f"MSC, batch {args.batch}, bfloat16", scales=None, batch=args.batch,
                dtype=torch.bfloat16)  # fmt: skip
            row(f"MSC + CRF (GPU), batch {args.batch}", scales=None, crf=True, batch=args.batch)
            row(f"MSC + CRF (GPU), batch {args.batch}, bfloat16", scales=None, crf=True,
                batch=args.batch, dtype=torch.bfloat16)  # fmt: skip
        else:
            crf_inline = row("MSC + CRF inline", scales=None, crf=True)
            threads = torch.get_num_threads()
            left = max(1, threads - args.crf_workers)  # the network leaves the CRF workers' cores
            torch.set_num_threads(left)
            msc_left = row(f"MSC, batch 1, network on {left} thread(s)", scales=None)
            piped = row(f"MSC + CRF, {args.crf_workers} CRF workers, network on {left}",
                        scales=None, crf=True, crf_workers=args.crf_workers)  # fmt: skip
            torch.set_num_threads(threads)

    print(
        f"evaluate(): {len(data)} VOC-size photos, DeepLab v2 ResNet-101, 513x513 padding, "
        f"device {device}{' (' + torch.cuda.get_device_name(device) + ')' if cuda else ''}, "
        f"{torch.get_num_threads()} CPU threads, {workers} decoding workers, median of "
        f"{args.runs} passes; torch {torch.__version__}"
    )
    print(f"{'pipeline':<44}{'ms/image':>10}{'images/s':>10}{'vs first':>10}")
    for name, t in rows:
        print(f"{name:<44}{t * 1000:>10.1f}{1 / t:>10.2f}{single / t:>9.2f}x")
    if not cuda:
        crf_alone = crf_inline - msc
        bound = max(msc_left, crf_alone / args.crf_workers)
        print(
            f"CRF alone ~{crf_alone * 1000:.0f} ms/image; with {args.crf_workers} CRF workers "
            f"the bound max(network, CRF/workers) is {bound * 1000:.0f} ms/image and the "
            f"pipeline takes {piped * 1000:.0f} ms/image ({bound / piped:.0%} of the bound's "
            f"speed); inline takes {crf_inline * 1000:.0f}"
        )
        return
    peak_flops(model, device, args)


def _writing_ms(data: VOCSegmentation, runs: int) -> float:
    """Median ms to encode and write one label map as ``deeplabv2 predict`` does."""
    labels = [data[i][1] for i in range(len(data))]
    with tempfile.TemporaryDirectory() as out:

        def write_all() -> None:
            for i, label in enumerate(labels):
                save_labels(Path(out) / f"{i}.png", label, force=True)

        return 1000 * seconds(write_all, runs) / len(labels)


def profile_table(model, device, workers: int, args) -> None:
    """Stages per image of single scale, MSC and MSC + CRF (eager, and compiled with
    ``--compile``), the bound they allow, and the unprofiled time against it."""
    cuda = device.type == "cuda"
    dtype = torch.bfloat16 if args.dtype == "bfloat16" else None
    configs = [("single scale", {"scales": ()}), ("MSC", {}), ("MSC + CRF", {"crf": True})]
    if args.compile:
        configs += [(f"{name}, compiled", {**kw, "compile": True}) for name, kw in configs]
    columns: list[tuple[str, Profile, float, float]] = []
    with tempfile.TemporaryDirectory() as tmp:
        data = VOCSegmentation(make_voc(Path(tmp) / "voc", args.images), "val")
        speed = {"batch_size": args.batch, "workers": workers, "crf_workers": 0}
        for name, kw in configs:
            seg = Segmenter(model, device=device, dtype=dtype, **kw)

            def one_pass(profile=None, seg=seg) -> None:
                evaluate(seg, data, progress=False, profile=profile, **speed)
                if cuda:
                    torch.cuda.synchronize()

            plain = seconds(one_pass, args.runs) / len(data)
            profile = Profile(device)
            one_pass(profile)
            bound = profile.bound(workers)
            columns.append((name, profile, bound, plain))
        writing = _writing_ms(data, args.runs)
    seen = {s for _, p, _, _ in columns for s in p.per_image()}
    stages = [s for s in STAGES if s in seen] + sorted(seen - set(STAGES))
    where = f"{device}" + (f" ({torch.cuda.get_device_name(device)})" if cuda else "")
    print(
        f"profile of evaluate(): {args.images} VOC-size photos, DeepLab v2 ResNet-101, 513x513 "
        f"padding, batch {args.batch}, {args.dtype}, {where}, {torch.get_num_threads()} CPU "
        f"threads, {workers} decoding workers; ms per image; torch {torch.__version__}"
    )
    print(f"{'stage':<28}" + "".join(f"{name:>24}" for name, *_ in columns))
    for s in stages:
        print(f"{s:<28}" + "".join(f"{p.per_image().get(s, 0.0):>24.1f}" for _, p, _, _ in columns))
    rows = [("bound (busiest resource)", [b for *_, b, _ in columns]),
            ("measured, not profiled", [t * 1000 for *_, t in columns]),
            ("measured / bound", [t * 1000 / b for *_, b, t in columns])]  # fmt: skip
    for label, values in rows:
        print(f"{label:<28}" + "".join(f"{v:>24.2f}" for v in values))
    print(f"PNG encoding and writing (predict only): {writing:.1f} ms per image")
    for name, profile, _, t in columns:
        if "CRF" in name:  # the target: within 1.1x of max(network, CRF), all of one run
            ms = profile.per_image()
            slowest = max(ms["network"], ms["CRF"])
            print(
                f"{name}: {t * 1000:.0f} ms per image = {t * 1000 / slowest:.2f}x "
                f"max(network {ms['network']:.0f}, CRF {ms['CRF']:.0f})"
            )


def peak_flops(model, device, args) -> None:
    """The network alone (single scale, 513x513, bfloat16 autocast) at ``--batch``."""
    name = torch.cuda.get_device_name(device)
    peak = args.peak_tflops or next((v for k, v in _PEAKS.items() if k in name), None)
    x = torch.randn(args.batch, 3, 513, 513, device=device)
    folded = model.to(memory_format=torch.channels_last)
    x = x.to(memory_format=torch.channels_last)

    def forward() -> None:
        with torch.inference_mode(), torch.autocast("cuda", dtype=torch.bfloat16):
            folded(x)
        torch.cuda.synchronize()

    t = seconds(forward, max(args.runs, 5))
    tflops = 2 * _GMACS_513 * 1e9 * args.batch / t / 1e12
    share = f"{tflops / peak:.1%} of the {peak:.0f} TFLOP/s bf16 peak" if peak else "peak unknown"
    print(
        f"network alone, batch {args.batch}, bfloat16: {t * 1000 / args.batch:.1f} ms/image, "
        f"{tflops:.0f} TFLOP/s = {share}"
    )


if __name__ == "__main__":
    main()
