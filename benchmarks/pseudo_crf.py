"""Pseudo-label speed (``deeplabv2 crf``): the papers' pydensecrf loop in one process vs ours.

``--images`` VOC-size photographs (500x375 crops of scikit-image's coffee, astronaut, rocket and
chelsea, upscaled) with generated CAMs in IRN's layout (``high_res`` ``(K, H, W)`` in [0, 1],
``keys``; 1 to 3 classes each) are written to a temporary folder; each row turns all of them
into pseudo-labels with ``--recipe`` (IRN: two CRF runs per image, label unaries; PSA: two runs,
probability unaries), files read and PNG-free:

* ``pydensecrf, 1 process``: the recipe written as the paper's code does it (pydensecrf's
  ``DenseCRF2D`` + ``unary_from_labels`` / ``unary_from_softmax``), one image after another --
  the reference of the ratios;
* ``deeplabv2.crf.pseudo_label_files`` with each ``--backends`` entry, in 1 process (all threads)
  and in ``--workers`` processes (default: one per core), pool start-up included.

Median wall time over ``--runs`` runs (after an untimed warm-up that compiles numba's kernels);
images/s, the ratio against the reference (> 1 = faster) and the share of pixels whose label
equals the reference's.

    python benchmarks/pseudo_crf.py [--images 16] [--runs 3] [--recipe irn|psa]
                                    [--backends numba pydensecrf] [--workers N]
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path
from typing import Callable

import numpy as np
from PIL import Image
from skimage import data as skdata

from deeplabv2.crf import PSEUDO_LABEL_RECIPES, get_backend, load_scores, pseudo_label_files
from deeplabv2.crf.synthetic import coarse_probs

PHOTOS = (skdata.coffee, skdata.astronaut, skdata.rocket, skdata.chelsea)


def _photo(i: int) -> np.ndarray:
    """A 500x375 RGB photograph (cropped, or upscaled first where smaller)."""
    image = Image.fromarray(PHOTOS[i % len(PHOTOS)]())
    scale = max(500 / image.width, 375 / image.height, 1.0)
    image = image.resize((round(image.width * scale), round(image.height * scale)))
    return np.ascontiguousarray(np.asarray(image)[:375, :500])


def write_inputs(folder: Path, count: int) -> tuple[list[Path], list[Path]]:
    """``count`` images and their IRN-layout CAMs (``.npz``)."""
    rng = np.random.default_rng(0)
    images, scores = [], []
    for i in range(count):
        image = _photo(i)
        keys = np.sort(rng.choice(20, size=1 + i % 3, replace=False))
        probs = coarse_probs(image, len(keys) + 3, seed=i, temperature=20)[3:]
        cams = (probs / (probs.max(axis=(1, 2), keepdims=True) + 1e-5)).astype(np.float32)
        images.append(folder / f"{i}.png")
        scores.append(folder / f"{i}.npz")
        Image.fromarray(image).save(images[-1])
        np.savez(scores[-1], high_res=cams, keys=keys)
    return images, scores


def reference(recipe: str, image: np.ndarray, cams: np.ndarray, keys: np.ndarray) -> np.ndarray:
    """The paper's code (IRN cam_to_ir_label.py + crf_inference_label, or PSA infer_cls.py +
    crf_inference + the la/ha combination of voc12/data.py) with pydensecrf."""
    import pydensecrf.densecrf as dcrf
    from pydensecrf.utils import unary_from_labels, unary_from_softmax

    h, w = image.shape[:2]
    classes = np.concatenate(([0], keys + 1))
    r = PSEUDO_LABEL_RECIPES[recipe]
    p = r.params
    runs = []
    for value in r.values:
        if recipe == "irn":
            scores = np.pad(cams, ((1, 0), (0, 0), (0, 0)), constant_values=value)
            unary = unary_from_labels(scores.argmax(0), len(classes), r.gt_prob, zero_unsure=False)
        else:
            background = np.power(1 - cams.max(0, keepdims=True), value)
            unary = unary_from_softmax(np.concatenate((background, cams)))
        d = dcrf.DenseCRF2D(w, h, len(classes))
        d.setUnaryEnergy(np.ascontiguousarray(unary))
        d.addPairwiseGaussian(sxy=p.pos_xy_std, compat=p.pos_w)
        d.addPairwiseBilateral(sxy=p.bi_xy_std, srgb=p.bi_rgb_std, rgbim=image, compat=p.bi_w)
        runs.append(classes[np.array(d.inference(p.iterations)).reshape(-1, h, w).argmax(0)])
    first, second = runs
    labels = first.copy()
    labels[first == 0] = 255
    labels[(first == 0) & (second == 0)] = 0
    if r.background_wins:
        labels[second == 0] = 0
    return labels.astype(np.uint8)


def _median(fn: Callable[[], object], runs: int) -> tuple[float, object]:
    result = fn()  # warm-up (numba's kernels load or compile)
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times), result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=16)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--recipe", choices=sorted(PSEUDO_LABEL_RECIPES), default="irn")
    parser.add_argument("--backends", nargs="+", default=["numba", "pydensecrf"])
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as folder:
        images, scores = write_inputs(Path(folder), args.images)

        def papers_loop() -> list[np.ndarray]:
            out = []
            for image, score in zip(images, scores):
                cams = load_scores(score)
                rgb = np.array(Image.open(image).convert("RGB"))  # writable, as pydensecrf needs
                out.append(reference(args.recipe, rgb, cams.values, cams.keys))
            return out

        base, expected = _median(papers_loop, args.runs)
        rows = [("pydensecrf, the paper's loop", 1, base, 1.0)]
        for backend in (b for b in args.backends if get_backend(b).available()):
            for workers in sorted({0, args.workers}):

                def ours(backend=backend, workers=workers) -> list[np.ndarray]:
                    results = pseudo_label_files(
                        images, scores, PSEUDO_LABEL_RECIPES[args.recipe], backend=backend,
                        workers=workers if workers > 1 else 0,
                    )  # fmt: skip
                    labels = {r.index: r.label.labels for r in results}
                    return [labels[i] for i in range(len(images))]

                seconds, got = _median(ours, args.runs)
                same = np.mean([(a == b).mean() for a, b in zip(got, expected)])
                rows.append((f"deeplabv2 crf, {backend}", max(workers, 1), seconds, same))

    print(
        f"pseudo-labels ({args.recipe} recipe), {args.images} images 500x375 with 1-3 CAMs, "
        f"median of {args.runs}; {os.cpu_count()} cores"
    )
    print(f"{'':<32}{'processes':>10}{'images/s':>10}{'vs paper':>10}{'same px':>10}")
    for name, processes, seconds, same in rows:
        rate = args.images / seconds
        print(f"{name:<32}{processes:>10}{rate:>10.2f}{base / seconds:>9.2f}x{same:>10.4%}")


if __name__ == "__main__":
    main()
