"""Pseudo-labels from CAMs or class scores with the dense CRF (weakly supervised segmentation).

:func:`pseudo_label` refines one image's :class:`~deeplabv2.crf.score_maps.Scores` with a
:class:`~deeplabv2.crf.params.PseudoLabelRecipe`; :func:`pseudo_labels_batch` does the same for
many images, running the CRF on batches of images of one size and class count (the ``torch``
backend on a GPU). Each CRF run is what the papers' code asks pydensecrf for:

1. the CRF's input probabilities: the scores; for CAMs, a background channel 0 first (a
   constant, or ``(1 - max_k cam_k) ** alpha``); with the ``"labels"`` unary, their arg-max as
   ``gt_prob`` for that class and ``(1 - gt_prob) / (C - 1)`` for the others (whose ``-log``
   is pydensecrf's ``unary_from_labels(..., zero_unsure=False)``);
2. mean-field inference (:class:`~deeplabv2.crf.DenseCRF`);
3. the arg-max, mapped to dataset classes (CAM ``k`` is class ``keys[k] + 1``); with two runs,
   confident foreground from the first, confident background from the second, the rest 255;
   pixels whose refined probability is below ``min_confidence`` are 255.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Optional, Union

import numpy as np
import torch

from ..data.images import orientation_hint
from .dense_crf import DenseCRF
from .params import PSEUDO_LABEL_RECIPES, PseudoLabelRecipe
from .potentials import PROB_FLOOR
from .score_maps import Scores

__all__ = [
    "IGNORE",
    "PseudoLabel",
    "check_image",
    "check_recipe",
    "crf_inputs",
    "pseudo_label",
    "pseudo_labels_batch",
]

#: the label of unsure pixels (VOC's ignore index)
IGNORE = 255


@dataclass
class PseudoLabel:
    """One image's pseudo-label.

    Attributes:
        labels: ``(H, W) uint8`` dataset class indices, 255 where unsure.
        probs: ``(R, C, H, W) float32`` the refined probabilities of each of the recipe's ``R``
            CRF runs (1 or 2); channel ``c`` is class ``classes[c]``.
        classes: ``(C,) int64`` the dataset class of each channel.
    """

    labels: np.ndarray
    probs: np.ndarray
    classes: np.ndarray


def _with_background(cams: np.ndarray, recipe: PseudoLabelRecipe, value: float) -> np.ndarray:
    """``(K, H, W)`` CAMs -> ``(K + 1, H, W) float32`` with the recipe's background first."""
    if recipe.background == "constant":  # IRN: np.pad(cams, ..., constant_values=thres)
        background = np.full((1, *cams.shape[1:]), value, dtype=cams.dtype)
    else:  # PSA: np.power(1 - np.max(cams, axis=0, keepdims=True), alpha)
        peak = np.zeros((1, *cams.shape[1:]), cams.dtype)
        if len(cams):
            peak = cams.max(axis=0, keepdims=True)
        background = np.power(1 - peak, value)
    return np.concatenate((background, cams), axis=0).astype(np.float32)


def _label_probs(labels: np.ndarray, classes: int, gt_prob: float, path: str) -> np.ndarray:
    """``(H, W)`` channel indices -> ``(C, H, W) float32`` probabilities whose ``-log`` is
    pydensecrf's ``unary_from_labels(labels, C, gt_prob, zero_unsure=False)``."""
    other = (1.0 - gt_prob) / (classes - 1)
    if other < PROB_FLOOR:
        raise ValueError(
            f"{path}: gt_prob {gt_prob} leaves {other:.2g} to each of the other {classes - 1} "
            f"classes, below the CRF's floor {PROB_FLOOR}; use a smaller gt_prob"
        )
    probs = np.full((classes, *labels.shape), other, dtype=np.float32)
    np.put_along_axis(probs, labels[None], np.float32(gt_prob), axis=0)
    return probs


def check_recipe(scores: Scores, recipe: PseudoLabelRecipe) -> None:
    """ValueError (naming the file) for CAMs with a recipe without a background, or scores that
    already have one with a recipe of two runs (those are made for CAMs): it does not depend on
    the image, so a caller with many files of one kind can check the first one before any work."""
    if scores.cams and not recipe.values:
        raise ValueError(
            f"{scores.path or 'Scores'}: CAMs need a background score: use a recipe with one "
            "(recipe='irn' or 'psa', or PseudoLabelRecipe(values=(T,)); CLI: --crf-params irn|psa, "
            "--bg-threshold T or --bg-alpha A)"
        )
    if not scores.cams and len(recipe.values) > 1:
        raise ValueError(
            f"{scores.path or 'Scores'}: holds class scores with their background, but the "
            "recipe's two runs are made for CAMs (high_res and keys); use a one-run recipe "
            "(PseudoLabelRecipe(params); CLI: --crf-params FILE|resnet101-voc|vgg16-voc)"
        )


def crf_inputs(scores: Scores, recipe: PseudoLabelRecipe) -> list[np.ndarray]:
    """The CRF's input probabilities, one ``(C, H, W) float32`` array per run of the recipe;
    ValueError as :func:`check_recipe` says."""
    check_recipe(scores, recipe)
    if scores.cams:
        runs = [_with_background(scores.values, recipe, v) for v in recipe.values]
    else:
        runs = [scores.values]
    if recipe.unary == "labels" and runs[0].shape[0] >= 2:
        runs = [_label_probs(r.argmax(0), r.shape[0], recipe.gt_prob, scores.path) for r in runs]
    return runs


def _combine(
    refined: list[np.ndarray], classes: np.ndarray, recipe: PseudoLabelRecipe, min_confidence: float
) -> np.ndarray:
    """``(H, W) uint8`` labels from each run's refined ``(C, H, W)`` probabilities."""
    runs = [classes[q.argmax(0)] for q in refined]
    labels = runs[0].copy()
    if len(runs) == 2:  # IRN's cam_to_ir_label.py, PSA's VOC12AffDataset
        foreground, background = runs
        labels[foreground == 0] = IGNORE
        labels[(foreground == 0) & (background == 0)] = 0
        if recipe.background_wins:
            labels[background == 0] = 0
    if min_confidence > 0:
        confidence = np.min([q.max(0) for q in refined], axis=0)
        labels[confidence < min_confidence] = IGNORE
    return labels.astype(np.uint8)


def check_image(image: np.ndarray, scores: Scores, name: str) -> None:
    """ValueError naming both files unless ``image`` is ``(H, W, 3) uint8`` of the scores'
    ``(H, W)``."""
    if image.ndim != 3 or image.shape[-1] != 3 or image.dtype != np.uint8:
        raise ValueError(f"{name}: the image must be (H, W, 3) uint8 RGB, got {image.dtype} "
                         f"{image.shape}")  # fmt: skip
    if image.shape[:2] == scores.values.shape[:2] != scores.values.shape[1:]:
        raise ValueError(
            f"{scores.path or 'Scores'}: an array of shape {scores.values.shape} for the image "
            f"{name} of size {image.shape[:2]}: it looks channels-last (H, W, C); save it as "
            "(C, H, W) (np.transpose(a, (2, 0, 1)))"
        )
    if image.shape[:2] != scores.values.shape[1:]:
        raise ValueError(
            f"{scores.path}: scores of size {scores.values.shape[1:]} (H, W) for the image {name} "
            f"of size {image.shape[:2]}; save the scores at the image's size"
            + orientation_hint(name, scores.values.shape[1:], "the scores")
        )


def _check_arguments(
    scores: Sequence[Scores], recipe: Union[PseudoLabelRecipe, str, None]
) -> PseudoLabelRecipe:
    """The recipe (a :data:`PSEUDO_LABEL_RECIPES` name taken too); TypeError for scores that are
    not :class:`Scores` (whose checks have run) or a recipe of another type."""
    for score in scores:
        if not isinstance(score, Scores):
            raise TypeError(
                f"scores must be deeplabv2.crf.Scores, got {type(score).__name__}: wrap an array "
                "as Scores(values) (class scores) or Scores(cams, keys) (CAMs), or read a file "
                "with load_scores"
            )
    if isinstance(recipe, str):
        if recipe not in PSEUDO_LABEL_RECIPES:
            raise ValueError(
                f"unknown recipe {recipe!r}; the names of PSEUDO_LABEL_RECIPES are "
                f"{', '.join(sorted(PSEUDO_LABEL_RECIPES))}"
            )
        return PSEUDO_LABEL_RECIPES[recipe]
    if recipe is None:
        return PseudoLabelRecipe()
    if not isinstance(recipe, PseudoLabelRecipe):
        raise TypeError(
            f"recipe must be a PseudoLabelRecipe or a name of PSEUDO_LABEL_RECIPES, got "
            f"{type(recipe).__name__}"
        )
    return recipe


def pseudo_labels_batch(
    images: Sequence[np.ndarray],
    scores: Sequence[Scores],
    recipe: Union[PseudoLabelRecipe, str, None] = None,
    *,
    backend: str = "auto",
    device: Union[str, torch.device] = "cpu",
    batch_size: int = 1,
    min_confidence: float = 0.0,
    names: Optional[Sequence[str]] = None,
) -> list[PseudoLabel]:
    """:func:`pseudo_label` for many images; the CRF runs on ``device`` for up to ``batch_size``
    images at once among those of one size and class count (ragged batches are not formed).

    Args:
        images: ``(H, W, 3) uint8`` RGB images.
        scores: their scores (:func:`~deeplabv2.crf.score_maps.load_scores`), at the images' sizes.
        recipe: as :func:`pseudo_label`.
        backend: as :func:`pseudo_label`.
        min_confidence: as :func:`pseudo_label`.
        device: where the CRF's tensors go (``"cuda"``: the torch backend runs there).
        batch_size: images per CRF call.
        names: the images' names for error messages.
    """
    recipe = _check_arguments(scores, recipe)
    names = list(names) if names is not None else [f"image {i}" for i in range(len(images))]
    if not 0 <= min_confidence <= 1:
        raise ValueError(f"min_confidence must be in [0, 1], got {min_confidence}")
    crf = DenseCRF.from_params(recipe.params, backend=backend)
    inputs = []
    for image, score, name in zip(images, scores, names):
        check_image(image, score, name)
        inputs.append(crf_inputs(score, recipe))
    refined: dict[tuple[int, int], np.ndarray] = {}  # (image, run) -> refined probabilities
    groups: dict[tuple, list[tuple[int, int]]] = {}
    for i, runs in enumerate(inputs):
        for r, probs in enumerate(runs):
            if probs.shape[0] < 2:  # no foreground class: nothing to choose
                refined[i, r] = np.ones_like(probs)
            else:
                groups.setdefault(probs.shape, []).append((i, r))
    for members in groups.values():
        for start in range(0, len(members), batch_size):
            chunk = members[start : start + batch_size]
            # np.stack copies into a writable array: torch warns about read-only ones (a
            # decoded image may be one), and one copy is all the batch needs
            image_t = torch.from_numpy(np.stack([images[i] for i, _ in chunk])).to(device)
            probs_t = torch.from_numpy(np.stack([inputs[i][r] for i, r in chunk])).to(device)
            q = crf(image_t.permute(0, 3, 1, 2), probs_t).cpu().numpy()
            for (i, r), qi in zip(chunk, q):
                refined[i, r] = qi
    out = []
    for i, (score, runs) in enumerate(zip(scores, inputs)):
        classes = score.classes()
        done = [refined[i, r] for r in range(len(runs))]
        labels = _combine(done, classes, recipe, min_confidence)
        out.append(PseudoLabel(labels, np.stack(done), classes))
    return out


def pseudo_label(
    image: np.ndarray,
    scores: Scores,
    recipe: Union[PseudoLabelRecipe, str, None] = None,
    *,
    backend: str = "auto",
    min_confidence: float = 0.0,
) -> PseudoLabel:
    """One image's pseudo-label: its CRF-refined scores or CAMs, as the recipe says.

    Args:
        image: ``(H, W, 3) uint8`` RGB image (the original photo, not a network input).
        scores: its scores or CAMs at its size (:func:`~deeplabv2.crf.score_maps.load_scores`, or
            ``Scores(values, keys)`` built in memory, checked as a file's; a bare array is
            refused with TypeError).
        recipe: CRF parameters, unary, background (:data:`~deeplabv2.crf.PSEUDO_LABEL_RECIPES`
            has PSA's and IRN's: pass one or its name, ``"irn"``); None:
            ``PseudoLabelRecipe()``, DeepLab v2's CRF (``DenseCRF()``'s parameters) on the
            scores as they are.
        backend: the CRF backend (``DenseCRF``'s names).
        min_confidence: pixels whose refined probability (the smallest over the runs of each
            run's largest) is below this are 255.

    Returns:
        :class:`PseudoLabel` (labels ``(H, W) uint8``, refined probabilities, classes).
    """
    return pseudo_labels_batch(
        [image], [scores], recipe, backend=backend, min_confidence=min_confidence
    )[0]
