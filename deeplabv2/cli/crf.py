"""``deeplabv2 crf``: pseudo-labels from CAMs or class scores with the dense CRF.

For each image of ``IMAGES_DIR``, its scores in ``SCORES_DIR`` (``deeplabv2.crf.score_maps`` has the
layouts: IRN's ``high_res``/``keys`` CAMs, ``(C, H, W)`` scores, ``predict --probs`` output) are
refined with a recipe (``--crf-params psa|irn|resnet101-voc|vgg16-voc|FILE``) into an
8-bit grayscale PNG of class indices in ``--out`` (255 = unsure; what the papers' scripts write and
read with imageio; ``--palette`` for VOC-palette PNGs to look at). Resumable: images whose outputs
exist are skipped unless ``--force``; an image's label PNG is written last and marks it done, so a
run killed half-way through an image redoes that image on the next run. On the CPU the images go
to ``--crf-workers`` processes; on a GPU the torch backend refines batches of images of one size.
Under ``torchrun`` each rank takes its share.
"""

from __future__ import annotations

import argparse
import os
import sys
from contextlib import closing
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, NamedTuple, Optional

from .._files import check_destination, check_writable
from ..crf import (  # the registries' names: no torch (the functions import what they use)
    BACKENDS,
    PRESETS,
    PSEUDO_LABEL_RECIPES,
    PseudoLabelRecipe,
    backend_help,
)
from ..errors import OutputExistsError
from . import writers
from .crf_record import RECORD, check_record, write_record
from .values import float_in, int_in
from .vocabulary import (
    add_crf_params_option,
    add_crf_workers_option,
    add_device_option,
    add_force_option,
    add_quiet_option,
    deprecate,
)

if TYPE_CHECKING:
    from ..distributed import Ranks

__all__ = ["RECORD", "Plan", "add_parser", "recipe", "run"]

#: ``--crf-params``' names: the papers' pseudo-label recipes, then DeepLab's CRF presets
_PRESETS = (*sorted(PSEUDO_LABEL_RECIPES), *sorted(PRESETS))


def add_parser(commands: argparse._SubParsersAction) -> None:
    """Register ``crf`` and its options."""
    parser = commands.add_parser(
        "crf", help="refine CAMs or class scores into pseudo-labels with the dense CRF"
    )
    parser.add_argument("images_dir", metavar="IMAGES_DIR", help="folder of the images")
    parser.add_argument(
        "scores_dir",
        metavar="SCORES_DIR",
        help="folder of one score file per image: <stem>.npz (IRN's high_res (K, H, W) CAMs in "
        "[0, 1] + keys (K,) 0-based foreground classes, or one (C, H, W) array), <stem>.npy "
        "(C, H, W) scores, or <stem>_probs.npy (predict --probs)",
    )
    parser.add_argument(
        "--out",
        required=True,
        metavar="DIR",
        help="folder of the label PNGs; images whose outputs are there already are skipped (a "
        "stopped run resumes), unless --force",
    )
    parser.add_argument(
        "--palette",
        action="store_true",
        help="write VOC-palette PNGs (to look at) instead of 8-bit grayscale class indices "
        "(the papers' format: IRN reads its labels with imageio, which turns a palette PNG into "
        "RGB colours). score and the datasets read both",
    )
    crf_params = add_crf_params_option(
        parser,
        _PRESETS,
        "DenseCRF()'s, DeepLab v2 ResNet-101's on VOC; psa, irn: the papers' CRF, unary and "
        "background, docs/crf.md",
    )
    deprecate(parser, "--preset", crf_params)
    background = parser.add_mutually_exclusive_group()
    background.add_argument(
        "--bg-threshold",
        type=float_in(0, 1),
        metavar="T",
        help="CAMs: a constant background score T in [0, 1] (IRN's conf_fg_thres/conf_bg_thres), "
        "one CRF run",
    )
    background.add_argument(
        "--bg-alpha",
        type=float_in(0),
        metavar="A",
        help="CAMs: background (1 - max_k cam_k) ** A (PSA's alpha), one CRF run",
    )
    _add_run_options(parser)
    parser.set_defaults(run=run)


def _add_run_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--min-confidence",
        type=float_in(0, 1),
        default=0.0,
        metavar="P",
        help="pixels whose refined probability is below P are 255 (unsure)",
    )
    parser.add_argument(
        "--allow-pickle",
        action="store_true",
        help="also read pickled .npy dicts (IRN's make_cam.py, PSA's infer_cls.py). Loading a "
        "pickle RUNS CODE stored in the file: use it only for files you trust",
    )
    parser.add_argument("--crf-backend", default="auto", choices=BACKENDS, help=backend_help())
    add_device_option(parser)
    parser.add_argument(
        "--batch-size",
        type=int_in(1),
        default=8,
        metavar="N",
        help="on a GPU: images of one size per CRF call",
    )
    crf_workers = add_crf_workers_option(
        parser, "one per usable core; never more than the cores or the images to do"
    )
    deprecate(parser, "--workers", crf_workers)
    parser.add_argument(
        "--save-probs",
        action="store_true",
        help="also write <stem>_probs.npz: probs (R, C, H, W) float16, classes (C,)",
    )
    parser.add_argument(
        "--max-pixels", type=int_in(1), metavar="N", help="refuse larger images (default: no limit)"
    )
    parser.add_argument(
        "--num-classes",
        type=int_in(2, 255),
        metavar="N",
        help="the dataset's classes, background included (21 for VOC): an image whose scores "
        "or CAM keys give a class >= N fails, named (default: unchecked)",
    )
    add_force_option(parser)
    add_quiet_option(parser)


def recipe(args: argparse.Namespace) -> PseudoLabelRecipe:
    """The recipe the options describe: a preset, or DenseCRF()'s / a file's parameters on the
    scores as they are; ``--bg-threshold`` / ``--bg-alpha`` set a one-run background."""
    from ..crf import DenseCRF

    spec = args.crf_params
    if spec in PSEUDO_LABEL_RECIPES:
        chosen = PSEUDO_LABEL_RECIPES[spec]
    elif spec in PRESETS:
        chosen = PseudoLabelRecipe(PRESETS[spec])
    elif spec is not None:
        if not os.path.isfile(spec):
            raise FileNotFoundError(
                f"--crf-params {spec!r} is neither a preset ({', '.join(_PRESETS)}) nor a "
                "parameter file"
            )
        chosen = PseudoLabelRecipe(DenseCRF.from_file(spec).params)
    else:
        chosen = PseudoLabelRecipe()
    if args.bg_threshold is not None:
        chosen = replace(chosen, background="constant", values=(args.bg_threshold,))
    if args.bg_alpha is not None:
        chosen = replace(chosen, background="power", values=(args.bg_alpha,))
    return chosen


class Plan(NamedTuple):
    """What a run does, decided once before anything is read or written."""

    recipe: PseudoLabelRecipe
    images: list[Path]
    scores: list[Path]
    outputs: list[list[Path]]  # per image: its label PNG (the mark of a finished image) first
    todo: list[int]


def _check(args: argparse.Namespace) -> PseudoLabelRecipe:
    """The folders and device checked; the recipe (a bad parameter file or background value
    fails here)."""
    import torch

    for name in ("images_dir", "scores_dir"):
        folder = getattr(args, name)
        if not os.path.isdir(folder):
            raise NotADirectoryError(f"{name.upper()} {folder} is not a folder")
    if os.path.exists(args.out) and not os.path.isdir(args.out):
        raise NotADirectoryError(f"--out {args.out} is a file; give a folder for the labels")
    out = Path(args.out).resolve()
    for name in ("images_dir", "scores_dir"):
        folder = Path(getattr(args, name)).resolve()
        if out == folder or folder in out.parents:
            raise ValueError(
                f"--out {args.out} is {name.upper()} {getattr(args, name)} or inside it: the "
                "labels would be written among (or over) the inputs; give another folder"
            )
    if (args.device or "").startswith("cuda") and not torch.cuda.is_available():
        raise ValueError(f"--device {args.device}: no CUDA GPU is available here; use cpu")
    return recipe(args)


def _check_stems(images: list[Path]) -> None:
    """ValueError naming both files if two images share a stem (``a.jpg``, ``a.png``): their
    labels and score files would be the same."""
    seen: dict[str, Path] = {}
    for image in images:
        if image.stem in seen:
            raise ValueError(
                f"{seen[image.stem]} and {image} have the same name: both would get the label "
                f"{image.stem}.png and the same score file; rename or move one of them"
            )
        seen[image.stem] = image


def _outputs(out: Path, stem: str, save_probs: bool) -> list[Path]:
    return [out / f"{stem}.png"] + ([out / f"{stem}_probs.npz"] if save_probs else [])


def _made(args: argparse.Namespace, images: list[Path]) -> int:
    """How many of the images have a label in ``--out`` already."""
    return sum((Path(args.out) / f"{image.stem}.png").exists() for image in images)


def _check_first_scores(args: argparse.Namespace, chosen: PseudoLabelRecipe, image: Path,
                        scores: Path) -> None:  # fmt: skip
    """The recipe against the first score file, before any work: a recipe that cannot fit
    (CAMs without a background) would fail every image alike. A file that cannot be read is
    left to be reported with its image."""
    from PIL import Image

    from ..crf.pseudo import check_recipe
    from ..crf.score_maps import load_scores

    try:
        with Image.open(image) as opened:  # the stored grid's size, from the header alone
            size = opened.size[::-1]
        first = load_scores(scores, allow_pickle=args.allow_pickle, size=size)
    except Exception:  # noqa: BLE001 - reported with its image, as every unreadable file
        return
    check_recipe(first, chosen)


def _plan(args: argparse.Namespace) -> Plan:
    """Images, their score files and outputs, and the images still to do; all checked before
    anything is read or written (a missing score file stops the run here)."""
    from ..crf.score_maps import find_scores

    chosen = _check(args)
    images = writers.collect_images([args.images_dir])
    if not images:
        raise ValueError(f"no images in {args.images_dir}")
    _check_stems(images)
    missing, scores = [], []
    for image in images:
        try:
            scores.append(find_scores(args.scores_dir, image.stem))
        except FileNotFoundError as error:
            missing.append(str(error))
    if missing:
        more = f" (and {len(missing) - 3} more)" if len(missing) > 3 else ""
        raise FileNotFoundError("; ".join(missing[:3]) + more)
    out = Path(args.out)
    outputs = [_outputs(out, image.stem, args.save_probs) for image in images]
    todo = [
        i for i, files in enumerate(outputs) if args.force or not all(f.exists() for f in files)
    ]
    check_record(args, chosen, _made(args, images))
    if todo:
        _check_first_scores(args, chosen, images[todo[0]], scores[todo[0]])
    check_writable(out, folder=True)
    for i in todo:  # the other files of an image without its label are from a killed run
        try:
            check_destination(outputs[i][0], args.force, probe=False)
        except OutputExistsError:
            absent = ", ".join(f.name for f in outputs[i] if not f.exists())
            raise OutputExistsError(
                f"{outputs[i][0]} exists but {absent} does not (made by a run without "
                "--save-probs, or removed?); pass --force to redo it, or remove the label"
            ) from None
    return Plan(chosen, images, scores, outputs, todo)


def _workers(requested: Optional[int], images: int) -> int:
    """CRF processes: at most one per usable core and per image (a line on stderr when a
    requested number is lowered); by default as many as that allows, none if that is one."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    limit = min(cores or 1, images)
    if requested is None or images == 0:
        return limit if limit > 1 else 0
    if requested > limit:
        print(
            f"deeplabv2 crf: --crf-workers {requested} lowered to {limit} ({cores} usable cores, "
            f"{images} images to do)",
            file=sys.stderr,
        )
        return limit
    return requested


def _refine(args: argparse.Namespace, ranks: Ranks, plan: Plan) -> tuple[int, list[str]]:
    """This rank's share: refine, write; the count written and the failures."""
    from tqdm import tqdm

    from ..crf.pseudo_files import pseudo_label_files
    from ..distributed import check_peers

    _, images, scores, outputs, todo = plan
    device = ranks.device(args.device)
    cpu = device.type == "cpu"
    mine = [todo[j] for j in ranks.shard(len(todo))]
    workers = _workers(args.crf_workers, len(mine)) if cpu else 0
    written, failures = 0, []
    bar = tqdm(total=len(mine), desc="crf", unit="image", disable=args.quiet or ranks.rank != 0)
    results = pseudo_label_files(
        images, scores, plan.recipe, indices=mine, backend=args.crf_backend, device=device,
        batch_size=args.batch_size, workers=workers,
        min_confidence=args.min_confidence, allow_pickle=args.allow_pickle,
        max_pixels=args.max_pixels,
    )  # fmt: skip
    with bar, closing(results):  # an error stops the workers at once
        for result in results:
            check_peers(ranks)  # another rank failed: stop too
            bar.update(1)
            if result.error is not None:
                failures.append(str(result.error))
                continue
            label, files = result.label, outputs[result.index]
            assert label is not None  # a FileResult without an error has its label
            if args.num_classes is not None and label.classes.max() >= args.num_classes:
                failures.append(
                    f"{scores[result.index]}: class {label.classes.max()} is beyond "
                    f"--num-classes {args.num_classes} (CAM keys are 0-based foreground classes: "
                    f"at most {args.num_classes - 2})"
                )
                continue
            # the PNG last: it marks the image as done, so what comes before it is replaced
            if args.save_probs:
                writers.save_refined(files[1], label.probs, label.classes, force=True)
            elif args.force:  # a redone image keeps no probabilities of its old label
                files[0].with_name(f"{images[result.index].stem}_probs.npz").unlink(missing_ok=True)
            writers.save_labels(files[0], label.labels, args.force, palette=args.palette)
            written += 1
    return written, failures


def run(args: argparse.Namespace) -> int:
    """``deeplabv2 crf``; the exit code (1 if any image failed)."""
    from ..distributed import start, stop, total, wait_for_peers

    plan = _plan(args)
    images, todo = plan.images, plan.todo
    made = _made(args, images)  # before any rank writes
    ranks = start()
    try:
        wait_for_peers(ranks)  # no rank writes before every rank has checked
        if ranks.rank == 0:
            write_record(args, plan.recipe, [plan.outputs[i][0] for i in plan.todo], made)
        wait_for_peers(ranks)  # the old labels of a --force run are gone before any is made
        written, failures = _refine(args, ranks, plan)
        for failure in failures:
            print(f"deeplabv2 crf: skipped {failure}", file=sys.stderr)
        written, failed = total(ranks, written), total(ranks, len(failures))
        if ranks.rank == 0:
            done = len(images) - len(todo)
            print(
                f"wrote {written} pseudo-labels to {args.out}"
                + (f" ({done} already there)" if done else "")
                + (f"; {failed} failed" if failed else "")
            )
        return 1 if failed else 0
    finally:
        stop(ranks)
