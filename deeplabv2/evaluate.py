"""Evaluation on a segmentation dataset, in one process or sharded across ``torchrun`` ranks."""

from __future__ import annotations

import warnings
from collections.abc import Iterable
from contextlib import closing
from typing import Any, Optional, cast

import numpy as np
import torch
import torch.distributed as dist
from tqdm import tqdm

from .data.classes import VOC_CLASSES
from .distributed import Ranks, check_peers, collective, report_failure
from .errors import DatasetError, ImageError, SeenDataError
from .metrics import ConfusionMatrix
from .pipeline import Result, default_crf_workers, stream
from .profiling import Profile, stage
from .protocol import stages_that_saw
from .segmenter import Segmenter

__all__ = ["evaluate"]

#: What ``skip_unreadable`` skips: an image or label that cannot be read, or that do not match.
_UNREADABLE = (ImageError, OSError, DatasetError)


class _Pairs:
    """``index -> (image, (label, name))`` of a dataset, for the decoding workers."""

    def __init__(self, dataset: Any) -> None:
        self.dataset = dataset

    def __call__(self, index: int) -> tuple[np.ndarray, tuple[torch.Tensor, str]]:
        """The image and ``(label as a tensor, name)`` (tensors are pinned for a GPU)."""
        image, label, name = self.dataset[index]
        return image, (torch.from_numpy(np.ascontiguousarray(label)), name)


def _update(
    matrix: ConfusionMatrix,
    results: Iterable[Result],
    failed: list[str],
    ranks: Ranks,
    every: int,
    profile: Optional[Profile],
) -> None:
    """Add each result's labels to ``matrix`` where they are (on the device), checked every
    ``every`` images (an invalid label names its image), or its error to ``failed``; stops
    when another rank has failed."""
    for count, result in enumerate(results, 1):
        check_peers(ranks)
        if result.error is not None:  # only the tolerated (unreadable) ones come back
            failed.append(str(result.error))
            continue
        label, name = result.extra
        assert result.labels is not None  # an on_device result without an error has them
        with stage(profile, "scoring"):
            target = label.to(result.labels.device, non_blocking=True)
            matrix.update(result.labels, target, defer=True, name=name)
            if count % every == 0:
                matrix.flush()
    with stage(profile, "scoring"):
        matrix.flush()


def _score(
    segmenter: Segmenter,
    dataset: Any,
    matrix: ConfusionMatrix,
    ranks: Ranks,
    progress: bool,
    tolerant: tuple[type[BaseException], ...],
    profile: Optional[Profile],
    **speed: Any,
) -> list[str]:
    """Score this rank's shard of ``dataset`` into ``matrix``; the images that failed."""
    indices = ranks.shard(len(dataset))
    if speed["crf_workers"] is None:
        speed["crf_workers"] = default_crf_workers(segmenter.device)
    failed: list[str] = []
    with tqdm(
        total=len(indices), desc="eval", unit="image", disable=not progress or ranks.rank != 0
    ) as bar:
        results = stream(
            segmenter,
            _Pairs(dataset),
            indices,
            tolerant=tolerant,
            progress=bar,
            on_device=True,
            profile=profile,
            **speed,
        )
        with closing(results):  # a failure stops the decoding and CRF workers at once
            _update(matrix, results, failed, ranks, speed["batch_size"], profile)
    return failed


def _merge(matrix: ConfusionMatrix, failed: list[str], ranks: Ranks) -> list[str]:
    """Every rank's matrix and failures, summed into ``matrix``; all the failures."""
    if not ranks.distributed:
        return failed
    with collective(ranks):  # every rank got here: none waits for a failed one
        matrix.all_reduce()
        gathered: list = [None] * ranks.world
        dist.all_gather_object(gathered, failed)
    return [text for part in gathered for text in part]


def _warn_about_labels(matrix: ConfusionMatrix, scored: int) -> None:
    """One warning for invalid label values, one where no pixel has a class label."""
    message = matrix.invalid_label_message()
    if message is not None:
        warnings.warn(
            f"{message} (strict_labels / --strict-labels makes this an error)", stacklevel=3
        )
    if int(matrix.matrix.sum()) == 0:
        why = ""
        if matrix.ignore_index is not None:
            why = f": every label pixel is {matrix.ignore_index} (ignored)"
            why += " or an invalid value" if message is not None else ""
        warnings.warn(
            f"no labelled pixel in the {scored} scored image(s){why}, so the scores are "
            "undefined (null)",
            stacklevel=3,
        )


def _check_unseen(model: Any, dataset: Any, allow: bool) -> tuple[str, ...]:
    """Refuse (:class:`~deeplabv2.errors.SeenDataError`) to score weights on a split their
    lineage says they were trained on; with ``allow``, a warning instead. The stages that saw
    the split (empty if none)."""
    info = getattr(model, "pretrained_info", None)
    data_name = getattr(dataset, "data_name", None)
    split = getattr(dataset, "split_name", None)
    if info is None or not data_name or not split:
        return ()
    stages = stages_that_saw(info.lineage, data_name, split)
    if not stages:
        return ()
    message = (
        f"the weights {info.name or info.path or info.source} were trained on the images of "
        f"{data_name} "
        f"{split} (their lineage: {'; '.join(stages)}), so scores there measure what they "
        "remember, not how they generalise" + (f" ({info.warning})" if info.warning else "")
    )
    if allow:
        warnings.warn(f"{message}; scored anyway (allow_seen_data)", stacklevel=3)
        return stages
    raise SeenDataError(
        f"{message}. Evaluate on a split they have not seen, or pass allow_seen_data=True "
        "(--allow-seen-data) to score them anyway"
    )


def evaluate(
    segmenter: Segmenter,
    dataset: Any,
    *,
    batch_size: int = 1,
    workers: int = 0,
    crf_workers: Optional[int] = None,
    progress: bool = True,
    ignore_index: int = 255,
    strict_labels: bool = False,
    ranks: Optional[Ranks] = None,
    skip_unreadable: bool = False,
    allow_seen_data: bool = False,
    profile: Optional[Profile] = None,
) -> dict:
    """Segment every ``(image, label, name)`` of ``dataset`` and score it.

    Images are decoded in ``workers`` processes and go through the network ``batch_size`` at
    a time; with a CRF on the CPU, ``crf_workers`` processes refine image ``i`` while the
    network already works on the next ones (default:
    :func:`deeplabv2.pipeline.default_crf_workers`: none on two cores or fewer, where that
    measured slower; on a GPU the CRF runs there).
    Under ``torchrun`` (in an initialised ``torch.distributed`` group) every rank scores its
    shard and the confusion matrices are summed, so every rank returns the scores of the whole
    dataset; an exception on one rank stops the others after their current image (they raise
    :class:`~deeplabv2.distributed.RankFailed`) instead of leaving them waiting.
    Label values that are neither a class nor ``ignore_index`` are left out of the scores
    with one warning at the end (counted in ``invalid_label_pixels``), or raise a
    :class:`~deeplabv2.errors.LabelError` naming the image with ``strict_labels``. Where no
    pixel has a class label (all ``ignore_index``), the scores are ``None`` with a warning.
    With ``skip_unreadable``, an image or label that cannot be read (``ImageError``,
    ``OSError``) or whose sizes differ (``DatasetError``) is left out of the scores and
    listed in ``failed_images`` instead of raising.
    Weights whose lineage (``model.pretrained_info.lineage``) names the dataset's split
    (``dataset.data_name`` and ``dataset.split_name``, e.g. ``voc12-trainval`` on VOC 2012
    val) are refused unless ``allow_seen_data`` (then a warning).
    Everything after the network stays on its device: the label maps are scored there
    (:meth:`ConfusionMatrix.update` with ``defer``), with one copy of the counts to the host
    per batch. ``profile`` times every stage (:class:`deeplabv2.profiling.Profile`).

    A dataset's ``mean_over`` (class indices, e.g. Cityscapes' 13 of 16 classes) restricts the
    class means to those classes; the results then name them in ``mean_over``.

    Returns:
        :meth:`deeplabv2.metrics.ConfusionMatrix.scores` plus ``num_images`` (those scored),
        ``failed_images`` (the skipped images' errors, every rank's) and the settings.

    Raises:
        DatasetError: an empty dataset.
        SeenDataError: weights trained on the dataset's split, without ``allow_seen_data``.
    """
    if len(dataset) == 0:
        raise DatasetError("the dataset is empty: there is nothing to evaluate")
    ranks = ranks or Ranks.current()
    seen = _check_unseen(segmenter.model, dataset, allow_seen_data)
    num_classes = int(cast(Any, segmenter.model).num_classes)
    data_classes = tuple(getattr(dataset, "class_names", ()) or ())
    mean_over = getattr(dataset, "mean_over", None)
    if data_classes and len(data_classes) != num_classes:
        subset = ""
        if mean_over is not None and len(mean_over) == num_classes:
            subset = (
                f". Its {len(mean_over)}-class score is the {len(data_classes)}-class network's, "
                f"averaged over {len(mean_over)} of the classes, as the papers score it; a "
                f"network with {num_classes} outputs is not scored that way"
            )
        raise ValueError(
            f"the network predicts {num_classes} classes but the dataset has "
            f"{len(data_classes)} ({type(dataset).__name__}): these weights are not for this "
            f"dataset; pass weights trained on it (--weights){subset}"
        )
    names = (
        segmenter.class_names
        or data_classes
        or (VOC_CLASSES if num_classes == len(VOC_CLASSES) else None)
    )
    matrix = ConfusionMatrix(num_classes, ignore_index=ignore_index, strict=strict_labels)
    speed = {"batch_size": batch_size, "workers": workers, "crf_workers": crf_workers}
    try:
        tolerant = _UNREADABLE if skip_unreadable else ()
        failed = _score(segmenter, dataset, matrix, ranks, progress, tolerant, profile, **speed)
    except BaseException as error:
        report_failure(ranks, error)  # the other ranks stop too, instead of waiting for this one
        raise
    failed = sorted(_merge(matrix, failed, ranks))
    if ranks.rank == 0:
        _warn_about_labels(matrix, len(dataset) - len(failed))
    results = matrix.scores(names, mean_over=mean_over)
    if mean_over is not None:  # the class means average these classes only
        results["mean_over"] = [list(results["per_class_iou"])[i] for i in mean_over]
    results.update(num_images=len(dataset) - len(failed), failed_images=failed)
    results["settings"] = segmenter.settings()
    if seen:  # scored anyway (allow_seen_data): the record says so
        results["seen_data"] = list(seen)
    return results
