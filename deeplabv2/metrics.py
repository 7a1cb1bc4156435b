"""Segmentation metrics from a confusion matrix: pixel/mean accuracy, mean IoU, fwIoU."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from typing import Optional, Union

import numpy as np
import torch

from .errors import LabelError

__all__ = ["ConfusionMatrix"]

ArrayLike = Union[np.ndarray, torch.Tensor]


class ConfusionMatrix:
    """Accumulates a ``(num_classes, num_classes)`` confusion matrix (rows: ground truth).

    ``update(prediction, target)`` takes label maps of equal shape (numpy or torch, any device:
    the counting is a ``bincount`` where the data are); pixels whose target is ``ignore_index``
    are skipped. Target values that are neither a class (``0..num_classes-1``) nor
    ``ignore_index`` are a dataset problem: they are left out of the scores and counted in
    :attr:`invalid_labels` (value -> pixels), or raise a :class:`~deeplabv2.errors.LabelError`
    with ``strict=True``. Matrices merge with :meth:`merge` or :meth:`all_reduce`
    (``torch.distributed``), so evaluation can be split across processes.
    """

    def __init__(
        self, num_classes: int, ignore_index: Optional[int] = 255, strict: bool = False
    ) -> None:
        if num_classes < 1:
            raise ValueError(f"num_classes must be >= 1, got {num_classes}")
        self.num_classes = int(num_classes)
        self.ignore_index = ignore_index
        self.strict = strict
        self.matrix = torch.zeros(num_classes, num_classes, dtype=torch.int64)
        #: Label values outside the classes and ``ignore_index`` seen so far -> pixel count.
        self.invalid_labels: Counter[int] = Counter()

    def update(self, prediction: ArrayLike, target: ArrayLike) -> None:
        """Add one or more label maps: ``prediction`` and ``target`` integer, same shape."""
        pred = torch.as_tensor(prediction)
        true = torch.as_tensor(target)
        if pred.shape != true.shape:
            raise ValueError(
                f"prediction {tuple(pred.shape)} and target {tuple(true.shape)} differ in shape"
            )
        if pred.is_floating_point() or true.is_floating_point():
            raise ValueError("prediction and target must be integer label maps, not scores")
        true = true.to(pred.device).reshape(-1).long()
        pred = pred.reshape(-1).long()
        in_range = (true >= 0) & (true < self.num_classes)
        ignored = torch.zeros_like(in_range)
        if self.ignore_index is not None:
            ignored = true == self.ignore_index
        valid = in_range & ~ignored
        invalid = ~in_range & ~ignored
        if invalid.any():
            values, counts = torch.unique(true[invalid], return_counts=True)
            found = dict(zip(values.tolist(), counts.tolist()))
            if self.strict:
                raise LabelError(_invalid_message(found, self.num_classes, self.ignore_index))
            self.invalid_labels.update(found)
        pred, true = pred[valid], true[valid]
        if pred.numel() and (pred.min() < 0 or pred.max() >= self.num_classes):
            raise ValueError(f"predicted labels must be in 0..{self.num_classes - 1}")
        counts = torch.bincount(true * self.num_classes + pred, minlength=self.num_classes**2)
        self.matrix += counts.reshape(self.num_classes, self.num_classes).cpu()

    def merge(self, other: ConfusionMatrix) -> ConfusionMatrix:
        """Add another matrix of the same size in place; returns self."""
        if other.num_classes != self.num_classes:
            raise ValueError(f"cannot merge {other.num_classes} classes into {self.num_classes}")
        self.matrix += other.matrix
        self.invalid_labels.update(other.invalid_labels)
        return self

    def all_reduce(self, group=None) -> ConfusionMatrix:
        """Sum the matrix (and the invalid label counts) over all processes of
        ``torch.distributed``, in place; returns self.

        A collective: every process must call it, or the others wait for the process group's
        timeout. Call it in ``with deeplabv2.distributed.collective(ranks):``, which first
        waits until every rank got there and stops if one failed (as ``evaluate`` does).
        """
        import torch.distributed as dist

        device = "cuda" if dist.get_backend(group) == "nccl" else "cpu"
        matrix = self.matrix.to(device)
        dist.all_reduce(matrix, group=group)
        self.matrix = matrix.cpu()
        gathered: list = [None] * dist.get_world_size(group)
        dist.all_gather_object(gathered, dict(self.invalid_labels), group=group)
        self.invalid_labels = sum((Counter(g) for g in gathered), Counter())
        return self

    def reset(self) -> None:
        self.matrix.zero_()
        self.invalid_labels.clear()

    def invalid_label_message(self) -> Optional[str]:
        """One sentence about the invalid label values seen, or None if there were none."""
        if not self.invalid_labels:
            return None
        return _invalid_message(self.invalid_labels, self.num_classes, self.ignore_index)

    def scores(self, class_names: Optional[Sequence[str]] = None) -> dict:
        """Pixel accuracy, mean accuracy, mean IoU, frequency-weighted IoU and per-class IoU.

        Classes absent from both ground truth and prediction get IoU ``None`` and are left out
        of the means (as in the DeepLab evaluation). A score with nothing to average (no pixels
        at all) is ``None``, never NaN, so the result is valid JSON.
        """
        m = self.matrix.to(torch.float64)
        tp = m.diag()
        gt = m.sum(1)
        pred = m.sum(0)
        union = gt + pred - tp
        total = m.sum()
        present = gt > 0
        iou = torch.where(union > 0, tp / union.clamp(min=1), torch.nan)
        acc = torch.where(present, tp / gt.clamp(min=1), torch.nan)
        freq = gt / total if total > 0 else gt
        names = list(class_names) if class_names else [str(i) for i in range(self.num_classes)]
        return {
            "pixel_accuracy": float(tp.sum() / total) if total > 0 else None,
            "mean_accuracy": _mean(acc),
            "mean_iou": _mean(iou),
            "fw_iou": float((freq[union > 0] * iou[union > 0]).sum()) if total > 0 else None,
            "per_class_iou": {
                name: (None if torch.isnan(v) else float(v)) for name, v in zip(names, iou)
            },
            "num_pixels": int(total),
            "invalid_label_pixels": {str(k): v for k, v in sorted(self.invalid_labels.items())},
        }


def _mean(values: torch.Tensor) -> Optional[float]:
    """Mean of the defined (non-NaN) values, or None if there are none."""
    defined = values[~torch.isnan(values)]
    return float(defined.mean()) if defined.numel() else None


def _invalid_message(found: dict, num_classes: int, ignore_index: Optional[int]) -> str:
    values = sorted(found)
    shown = ", ".join(str(v) for v in values[:10]) + (" ..." if len(values) > 10 else "")
    ignore = f" and {ignore_index} (ignore)" if ignore_index is not None else ""
    return (
        f"{sum(found.values())} label pixels hold values outside 0..{num_classes - 1}{ignore} "
        f"(values: {shown}); they are left out of the scores. Check the labels, or the model's "
        "number of classes"
    )
