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

Options out of range are refused before anything is computed (``--holdout`` in (0, 1),
``--synthetic`` and ``--limit`` >= 2, ``--steps`` >= 1, ``--lr`` in (0, 10], grid values finite
and positive), and so is a split whose held-out part is empty; the data is checked before the
cache folder is created. Learned parameters that are not finite or absurd (a kernel weight or a
compatibility entry beyond 1000) stop the run with an error: such a file is never written.

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
from deeplabv2.errors import DatasetError
from deeplabv2.models import load_model

DEFAULT_GRID = {"bi_w": [3, 4, 5], "bi_xy_std": [50, 67, 80], "bi_rgb_std": [3, 4, 5]}
MAX_WEIGHT = 1000.0  # a learned kernel weight or compatibility entry beyond this is absurd
MAX_LR = 10.0  # Adam's step in the weights' softplus space: more only diverges


class TuningError(ValueError):
    """The gradient search diverged: its parameters are not finite or absurd."""


def check_learned(params: CRFParams) -> CRFParams:
    """``params`` if its kernel weights and compatibility entries are finite and at most
    :data:`MAX_WEIGHT` in size; else :class:`TuningError` (they are not to be written)."""
    values = {"pos_w": params.pos_w, "bi_w": params.bi_w}
    if params.compatibility is not None:
        for i, row in enumerate(params.compatibility):
            values.update({f"compatibility[{i}][{j}]": v for j, v in enumerate(row)})
    bad = {k: v for k, v in values.items() if not (math.isfinite(v) and abs(v) <= MAX_WEIGHT)}
    if bad:
        shown = ", ".join(f"{k}={v:g}" for k, v in list(bad.items())[:4])
        raise TuningError(
            f"the gradient search diverged ({shown}; at most {MAX_WEIGHT:g} is sensible): "
            "lower --lr or --steps; nothing was written"
        )
    return params


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
    for step in range(steps):
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
        loss = loss / max(1, labelled)
        if not torch.isfinite(loss):
            raise TuningError(
                f"the gradient search diverged: the loss of step {step + 1} is {float(loss)}; "
                "lower --lr; nothing was written"
            )
        loss.backward()
        optimizer.step()
    pos_w, bi_w = (float(w) for w in torch.nn.functional.softplus(raw.detach()))
    learned_matrix = matrix.detach().cpu().tolist() if compatibility else start.compatibility
    entries = [pos_w, bi_w] + [v for row in learned_matrix or [] for v in row]
    if not all(math.isfinite(v) for v in entries):  # CRFParams would refuse them less clearly
        raise TuningError(
            f"the gradient search diverged (pos_w={pos_w}, bi_w={bi_w}, or the compatibility "
            "matrix is not finite): lower --lr; nothing was written"
        )
    return check_learned(replace(start, pos_w=pos_w, bi_w=bi_w, compatibility=learned_matrix))


def _holdout(text: str) -> float:
    value = float(text)
    if not (0 < value < 1):  # NaN too
        raise argparse.ArgumentTypeError(f"must be a fraction in (0, 1), got {text}")
    return value


def _at_least(low: int):
    def parse(text: str) -> int:
        value = int(text)
        if value < low:
            raise argparse.ArgumentTypeError(f"must be an integer >= {low}, got {text}")
        return value

    parse.__name__ = "int"  # argparse's "invalid int value" for a non-number
    return parse


def _lr(text: str) -> float:
    value = float(text)
    if not (0 < value <= MAX_LR):
        raise argparse.ArgumentTypeError(f"must be a step size in (0, {MAX_LR:g}], got {text}")
    return value


def _positive(allow_zero: bool):
    def parse(text: str) -> float:
        value = float(text)
        ok = value >= 0 if allow_zero else value > 0
        if not (math.isfinite(value) and ok and value <= MAX_WEIGHT):
            rule = "[0" if allow_zero else "(0"
            raise argparse.ArgumentTypeError(f"must be in {rule}, {MAX_WEIGHT:g}], got {text}")
        return value

    parse.__name__ = "float"
    return parse


def split_items(items: list[Item], holdout: float) -> tuple[list[Item], list[Item]]:
    """The tuning part and the held-out part (``holdout`` of the items, at least one each).

    Raises:
        ValueError: either part would be empty (never score on the tuning images).
    """
    cut = max(1, int(len(items) * (1 - holdout)))
    tune, held_out = items[:cut], items[cut:]
    if not held_out:
        raise ValueError(
            f"--holdout {holdout:g} of {len(items)} image(s) leaves no held-out image to score "
            "on: use more images (--limit, --synthetic) or a larger --holdout"
        )
    return tune, held_out


def main(argv: Optional[list[str]] = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", help="VOC-format dataset root")
    parser.add_argument(
        "--synthetic",
        type=_at_least(2),
        help="use N (>= 2) generated images instead of a dataset (a demo)",
    )
    parser.add_argument("--split", default="val")
    parser.add_argument("--limit", type=_at_least(2), default=100)
    parser.add_argument("--weights", default="voc12")
    parser.add_argument("--cache", type=Path, help="folder for cached probs (with --data)")
    parser.add_argument(
        "--single-scale", action="store_true", help="no MSC (default: the weights' protocol)"
    )
    parser.add_argument("--method", choices=("grid", "gradient", "both"), default="grid")
    parser.add_argument(
        "--holdout", type=_holdout, default=0.5, help="held-out fraction, in (0, 1) (0.5)"
    )
    parser.add_argument("--start", default="resnet101-voc", help="preset or parameter file")
    weight, std = _positive(allow_zero=True), _positive(allow_zero=False)
    parser.add_argument("--bi-w", type=weight, nargs="+", default=DEFAULT_GRID["bi_w"])
    parser.add_argument("--bi-xy-std", type=std, nargs="+", default=DEFAULT_GRID["bi_xy_std"])
    parser.add_argument("--bi-rgb-std", type=std, nargs="+", default=DEFAULT_GRID["bi_rgb_std"])
    parser.add_argument("--steps", type=_at_least(1), default=40, help="gradient steps")
    parser.add_argument(
        "--lr", type=_lr, default=0.2, help=f"gradient step size (Adam), in (0, {MAX_LR:g}]"
    )
    parser.add_argument("--compatibility", action="store_true", help="also learn a matrix")
    parser.add_argument("--out", type=Path, help="write the chosen parameters (JSON) here")
    parser.add_argument("--force", action="store_true", help="overwrite --out")
    args = parser.parse_args(argv)
    if args.out is not None and args.out.exists() and not args.force:
        parser.error(f"{args.out} exists; pass --force to overwrite it")
    try:
        start = DenseCRF.from_spec(args.start).params
    except (OSError, ValueError) as error:
        parser.error(f"--start: {error}")

    if args.synthetic is not None:
        items = synthetic_items(args.synthetic, seed=0)
    elif args.data and args.cache:
        try:  # the data is checked before the cache folder is created
            dataset = VOCSegmentation(args.data, args.split, limit=args.limit)
        except (OSError, DatasetError) as error:
            parser.error(f"--data: {error}")
        segmenter = Segmenter(load_model(args.weights), scales=() if args.single_scale else None)
        items = load_cached(cache_probabilities(segmenter, dataset, args.cache))
    else:
        parser.error("pass --data and --cache, or --synthetic N")
    try:
        tune, held_out = split_items(items, args.holdout)
    except ValueError as error:
        parser.error(str(error))
    device = "cuda" if torch.cuda.is_available() else "cpu"
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
        try:
            learned = gradient_search(tune, base, args.steps, args.lr, args.compatibility, device)
        except TuningError as error:
            raise SystemExit(f"tune_crf.py: {error}") from None
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
