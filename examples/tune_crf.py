"""Learn the dense CRF's parameters: the second stage of DeepLab v2's training.

As in the paper: cache the network's probabilities on held-out images (e.g. 100 VOC val
images), then choose the CRF's parameters on them, scoring by mean IoU.

* ``--method grid`` (the paper's cross-validation): every combination of the appearance
  kernel's ``bi_w``, ``bi_xy_std``, ``bi_rgb_std``, with the smoothness kernel fixed.
* ``--method gradient`` (beyond the paper): the bandwidths from the grid (or the start), then
  the two kernel weights -- and with ``--compatibility`` a class-compatibility matrix -- learned
  by gradient descent on the cross-entropy of the CRF's marginals, through the native,
  differentiable mean field.
* ``--method both``: the grid, then the gradient from the grid's best.

The cached images are split into a tuning part and a held-out part (``--holdout``); the mIoU of
no CRF, the starting CRF and every method's result on the held-out part is printed, and the
chosen parameters are written to ``--out`` (JSON), which ``DenseCRF.from_file``,
``Segmenter(crf=path)`` and ``deeplabv2 predict|eval --crf-params FILE`` read.

    python examples/tune_crf.py --data VOCdevkit/VOC2012 --split val --limit 200 \
        --weights voc12 --cache runs/crf-cache --method both --out runs/crf.json
"""

from __future__ import annotations

import argparse
import itertools
import math
from collections import defaultdict
from dataclasses import replace
from pathlib import Path
from typing import Optional

import numpy as np
import torch

from deeplabv2 import ConfusionMatrix, Segmenter, atomic_write
from deeplabv2.crf import PRESETS, CRFParams, DenseCRF
from deeplabv2.crf.backends.torch import mean_field
from deeplabv2.data import VOCSegmentation
from deeplabv2.models import load_model

DEFAULT_GRID = {"bi_w": [3, 4, 5], "bi_xy_std": [50, 67, 80], "bi_rgb_std": [3, 4, 5]}

Item = tuple[np.ndarray, np.ndarray, np.ndarray]  # image (H, W, 3), probs (C, H, W), label


def synthetic_items(count: int, seed: int) -> list[Item]:
    """Generated data for a quick run without a dataset: photos of coloured shapes (48x48,
    3 classes), their labels, and blurry stride-8 "network" probabilities like DeepLab's."""
    rng = np.random.default_rng(seed)
    items = []
    for _ in range(count):
        labels = np.zeros((48, 48), np.int64)
        top, left = rng.integers(4, 20, size=2)
        labels[top : top + 20, left : left + 22] = 1
        yy, xx = np.mgrid[:48, :48]
        cy, cx = rng.integers(12, 36, size=2)
        labels[(yy - cy) ** 2 + (xx - cx) ** 2 < 64] = 2
        colours = rng.integers(0, 256, size=(3, 3))
        image = np.clip(colours[labels] + rng.normal(0, 6, (48, 48, 3)), 0, 255).astype(np.uint8)
        onehot = torch.nn.functional.one_hot(torch.from_numpy(labels), 3).permute(2, 0, 1)
        coarse = torch.nn.functional.avg_pool2d(onehot.float()[None], 8)  # what stride 8 sees
        logits = torch.nn.functional.interpolate(
            coarse, size=(48, 48), mode="bilinear", align_corners=False
        )[0]
        logits = 4 * logits + 0.3 * torch.from_numpy(rng.normal(size=(3, 48, 48))).float()
        items.append((image, torch.softmax(logits, 0).numpy(), labels))
    return items


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


def load_cached(files: list[Path]) -> list[Item]:
    items = []
    for path in files:
        with np.load(path) as data:
            items.append((data["image"], data["probs"].astype(np.float32), data["label"]))
    return items


def _groups(items: list[Item]) -> list[list[int]]:
    """Indices of the items of equal size, refined together."""
    by_size: dict[tuple[int, int], list[int]] = defaultdict(list)
    for i, (image, _, _) in enumerate(items):
        by_size[image.shape[:2]].append(i)
    return list(by_size.values())


def miou(items: list[Item], params: Optional[CRFParams], device: str) -> float:
    """Mean IoU of the items after the CRF (``params``) or without one (None)."""
    num_classes = items[0][1].shape[0]
    matrix = ConfusionMatrix(num_classes)
    crf = None if params is None else DenseCRF.from_params(params, backend="torch")
    for indices in _groups(items):
        probs = torch.from_numpy(np.stack([items[i][1] for i in indices])).to(device)
        if crf is None:
            labels = probs.argmax(1).cpu()
        else:
            images = torch.from_numpy(np.stack([items[i][0] for i in indices]))
            labels = crf.labels(images.permute(0, 3, 1, 2).to(device), probs).cpu()
        for label, i in zip(labels, indices):
            matrix.update(label, items[i][2])
    return matrix.scores()["mean_iou"] or 0.0


def grid_search(
    items: list[Item],
    grid: dict[str, list[float]],
    start: CRFParams = PRESETS["resnet101-voc"],
    device: Optional[str] = None,
) -> list[tuple[CRFParams, float]]:
    """mIoU of every grid point (the other parameters from ``start``), best first."""
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    names = list(grid)
    table = []
    for values in itertools.product(*(grid[n] for n in names)):
        params = replace(start, **dict(zip(names, values)))
        table.append((params, miou(items, params, device)))
    return sorted(table, key=lambda row: -row[1])


def _inverse_softplus(value: float) -> float:
    return value + math.log(-math.expm1(-value)) if value > 0 else -20.0


def gradient_search(
    items: list[Item],
    start: CRFParams,
    steps: int = 40,
    lr: float = 0.2,
    compatibility: bool = False,
    device: Optional[str] = None,
) -> CRFParams:
    """``start`` with the kernel weights (and the compatibility matrix) learned by gradient.

    The loss is the cross-entropy of the CRF's marginals against the labels (255 ignored),
    averaged over the items; weights stay positive (softplus), the matrix starts at Potts
    (``-I``). The bandwidths and the number of iterations are ``start``'s.
    """
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    num_classes = items[0][1].shape[0]
    raw = torch.tensor(
        [_inverse_softplus(start.pos_w), _inverse_softplus(start.bi_w)], device=device
    ).requires_grad_()
    matrix = (
        torch.tensor(start.compatibility, device=device)
        if start.compatibility is not None
        else -torch.eye(num_classes, device=device)
    ).requires_grad_(compatibility)
    learned = [raw, matrix] if compatibility else [raw]
    optimizer = torch.optim.Adam(learned, lr=lr)
    batches = []
    for indices in _groups(items):
        images = torch.from_numpy(np.stack([items[i][0] for i in indices])).permute(0, 3, 1, 2)
        probs = torch.from_numpy(np.stack([items[i][1] for i in indices]))
        labels = torch.from_numpy(np.stack([items[i][2] for i in indices])).long()
        batches.append((images.to(device), probs.to(device), labels.to(device)))
    for _ in range(steps):
        optimizer.zero_grad()
        loss = 0.0
        for images, probs, labels in batches:
            weights = torch.nn.functional.softplus(raw)
            q = mean_field(images, probs, start, weights, matrix if compatibility else None)
            log_q = torch.log(q.clamp_min(1e-8))
            loss = loss + torch.nn.functional.nll_loss(
                log_q, labels, ignore_index=255, reduction="sum"
            )
        labelled = sum(int((labels != 255).sum()) for _, _, labels in batches)
        (loss / max(1, labelled)).backward()
        optimizer.step()
    pos_w, bi_w = (float(w) for w in torch.nn.functional.softplus(raw.detach()))
    learned_matrix = matrix.detach().cpu().tolist() if compatibility else start.compatibility
    return replace(start, pos_w=pos_w, bi_w=bi_w, compatibility=learned_matrix)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", help="VOC-format dataset root")
    parser.add_argument(
        "--synthetic", type=int, help="use N generated images instead of a dataset (a demo)"
    )
    parser.add_argument("--split", default="val")
    parser.add_argument("--limit", type=int, default=100)
    parser.add_argument("--weights", default="voc12")
    parser.add_argument("--cache", type=Path, help="folder for cached probs (with --data)")
    parser.add_argument(
        "--single-scale", action="store_true", help="no MSC (default: the weights' protocol)"
    )
    parser.add_argument("--method", choices=("grid", "gradient", "both"), default="grid")
    parser.add_argument("--holdout", type=float, default=0.5, help="held-out fraction (0.5)")
    parser.add_argument("--start", default="resnet101-voc", help="preset or parameter file")
    parser.add_argument("--bi-w", type=float, nargs="+", default=DEFAULT_GRID["bi_w"])
    parser.add_argument("--bi-xy-std", type=float, nargs="+", default=DEFAULT_GRID["bi_xy_std"])
    parser.add_argument("--bi-rgb-std", type=float, nargs="+", default=DEFAULT_GRID["bi_rgb_std"])
    parser.add_argument("--steps", type=int, default=40, help="gradient steps")
    parser.add_argument("--lr", type=float, default=0.2, help="gradient step size (Adam)")
    parser.add_argument("--compatibility", action="store_true", help="also learn a matrix")
    parser.add_argument("--out", type=Path, help="write the chosen parameters (JSON) here")
    parser.add_argument("--force", action="store_true", help="overwrite --out")
    args = parser.parse_args()
    if args.out is not None and args.out.exists() and not args.force:
        parser.error(f"{args.out} exists; pass --force to overwrite it")

    if args.synthetic:
        items = synthetic_items(args.synthetic, seed=0)
    elif args.data and args.cache:
        dataset = VOCSegmentation(args.data, args.split, limit=args.limit)
        segmenter = Segmenter(load_model(args.weights), scales=() if args.single_scale else None)
        items = load_cached(cache_probabilities(segmenter, dataset, args.cache))
    else:
        parser.error("pass --data and --cache, or --synthetic N")
    cut = max(1, int(len(items) * (1 - args.holdout)))
    tune, held_out = items[:cut], items[cut:] or items[:cut]
    device = "cuda" if torch.cuda.is_available() else "cpu"
    start = DenseCRF.from_spec(args.start).params
    results: list[tuple[str, CRFParams]] = [("start", start)]
    if args.method in ("grid", "both"):
        grid = {"bi_w": args.bi_w, "bi_xy_std": args.bi_xy_std, "bi_rgb_std": args.bi_rgb_std}
        table = grid_search(tune, grid, start, device)
        for params, score in table:
            print(f"grid {params.bi_w:g} {params.bi_xy_std:g} {params.bi_rgb_std:g}: "
                  f"{100 * score:.2f}% mIoU on the tuning images")  # fmt: skip
        results.append(("grid", table[0][0]))
    if args.method in ("gradient", "both"):
        base = results[-1][1]
        learned = gradient_search(tune, base, args.steps, args.lr, args.compatibility, device)
        results.append(("gradient", learned))
    print(
        f"held-out mIoU ({len(held_out)} images): no CRF {100 * miou(held_out, None, device):.2f}%"
    )
    scored = [(name, params, miou(held_out, params, device)) for name, params in results]
    for name, params, score in scored:
        print(f"  {name:<9} {100 * score:.2f}%  {params.as_dict()}")
    name, best, score = max(scored[1:] or scored, key=lambda row: row[2])
    if args.out is not None:
        best.save(args.out, force=args.force)
        print(f"wrote the {name} parameters ({100 * score:.2f}% held-out mIoU) to {args.out}")


if __name__ == "__main__":
    main()
