"""Cross-validate the dense CRF's parameters, the second stage of DeepLab v2's training.

As in the paper: cache the network's probabilities on a held-out subset (e.g. 100 val images),
then grid-search the appearance kernel (``bi_w``, ``bi_xy_std``, ``bi_rgb_std``) with the
smoothness kernel fixed (``pos_w`` 3, ``pos_xy_std`` 1 by default), scoring each setting by mean
IoU. Images of equal size are refined together with the batched native CRF.

    python examples/tune_crf.py --data VOCdevkit/VOC2012 --split val --limit 100 \
        --weights voc12 --cache runs/crf-cache
"""

from __future__ import annotations

import argparse
import itertools
from collections import defaultdict
from pathlib import Path
from typing import Optional

import numpy as np
import torch

from deeplabv2 import ConfusionMatrix, Segmenter
from deeplabv2.crf import DenseCRF
from deeplabv2.data import VOCSegmentation
from deeplabv2.models import deeplab_v2_resnet101
from deeplabv2.weights import atomic_write

DEFAULT_GRID = {"bi_w": [3, 4, 5], "bi_xy_std": [50, 67, 80], "bi_rgb_std": [3, 4, 5]}


def cache_probabilities(segmenter: Segmenter, dataset, cache: Path) -> list[Path]:
    """Network probabilities of every image as ``<cache>/<name>.npz`` (image, probs, label)."""
    cache.mkdir(parents=True, exist_ok=True)
    files = []
    for image, label, name in dataset:
        path = cache / f"{name}.npz"
        if not path.exists():
            probs = segmenter.probabilities(image).cpu().numpy().astype(np.float16)

            def write(tmp: str, probs=probs, image=image, label=label) -> None:
                with open(tmp, "wb") as handle:  # a file object: savez would append .npz
                    np.savez(handle, image=image, probs=probs, label=label)

            atomic_write(path, write)
        files.append(path)
    return files


def load_cached(files: list[Path]) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    items = []
    for path in files:
        with np.load(path) as data:
            items.append((data["image"], data["probs"].astype(np.float32), data["label"]))
    return items


def grid_search(
    items: list[tuple[np.ndarray, np.ndarray, np.ndarray]],
    grid: dict[str, list[float]],
    *,
    pos_w: float = 3.0,
    pos_xy_std: float = 1.0,
    iterations: int = 10,
    device: Optional[str] = None,
) -> list[tuple[dict, float]]:
    """mIoU of every grid point: a list of ``(params, mean IoU)``, best first."""
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    num_classes = items[0][1].shape[0]
    by_size: dict[tuple[int, int], list[int]] = defaultdict(list)
    for i, (image, _, _) in enumerate(items):
        by_size[image.shape[:2]].append(i)
    names = list(grid)
    table = []
    for values in itertools.product(*(grid[n] for n in names)):
        params = dict(zip(names, values))
        crf = DenseCRF(iterations, pos_w=pos_w, pos_xy_std=pos_xy_std, **params)
        matrix = ConfusionMatrix(num_classes)
        for indices in by_size.values():
            images = torch.from_numpy(np.stack([items[i][0] for i in indices])).permute(0, 3, 1, 2)
            probs = torch.from_numpy(np.stack([items[i][1] for i in indices]))
            labels = crf.labels(images.to(device), probs.to(device)).cpu()
            for label, i in zip(labels, indices):
                matrix.update(label, items[i][2])
        table.append((params, matrix.scores()["mean_iou"]))
    return sorted(table, key=lambda row: -row[1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", required=True)
    parser.add_argument("--split", default="val")
    parser.add_argument("--limit", type=int, default=100)
    parser.add_argument("--weights", default="voc12")
    parser.add_argument("--cache", type=Path, required=True, help="folder for cached probs")
    parser.add_argument("--msc", action="store_true")
    parser.add_argument("--bi-w", type=float, nargs="+", default=DEFAULT_GRID["bi_w"])
    parser.add_argument("--bi-xy-std", type=float, nargs="+", default=DEFAULT_GRID["bi_xy_std"])
    parser.add_argument("--bi-rgb-std", type=float, nargs="+", default=DEFAULT_GRID["bi_rgb_std"])
    parser.add_argument("--pos-w", type=float, default=3.0)
    parser.add_argument("--pos-xy-std", type=float, default=1.0)
    args = parser.parse_args()

    dataset = VOCSegmentation(args.data, args.split, limit=args.limit)
    segmenter = Segmenter(
        deeplab_v2_resnet101(pretrained=args.weights), scales=(0.5, 0.75) if args.msc else ()
    )
    items = load_cached(cache_probabilities(segmenter, dataset, args.cache))
    grid = {"bi_w": args.bi_w, "bi_xy_std": args.bi_xy_std, "bi_rgb_std": args.bi_rgb_std}
    table = grid_search(items, grid, pos_w=args.pos_w, pos_xy_std=args.pos_xy_std)
    print(f"{'bi_w':>6}{'bi_xy_std':>11}{'bi_rgb_std':>12}{'mIoU':>8}")
    for params, miou in table:
        print(
            f"{params['bi_w']:>6g}{params['bi_xy_std']:>11g}{params['bi_rgb_std']:>12g}"
            f"{100 * miou:>8.2f}"
        )
    best, miou = table[0]
    print(f"best: {best} (mIoU {100 * miou:.2f}, pos_w {args.pos_w}, pos_xy_std {args.pos_xy_std})")


if __name__ == "__main__":
    main()
