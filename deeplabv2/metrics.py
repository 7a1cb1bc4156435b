"""Segmentation metrics from a confusion matrix: pixel/mean accuracy, mean IoU, fwIoU."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Optional, Union

import numpy as np
import torch

__all__ = ["ConfusionMatrix"]

ArrayLike = Union[np.ndarray, torch.Tensor]


class ConfusionMatrix:
    """Accumulates a ``(num_classes, num_classes)`` confusion matrix (rows: ground truth).

    ``update(prediction, target)`` takes label maps of equal shape (numpy or torch, any device:
    the counting is a ``bincount`` where the data are); pixels whose target is ``ignore_index``
    (or outside ``0..num_classes-1``) are skipped. Matrices merge with :meth:`merge` or
    :meth:`all_reduce` (``torch.distributed``), so evaluation can be split across processes.
    """

    def __init__(self, num_classes: int, ignore_index: Optional[int] = 255) -> None:
        if num_classes < 1:
            raise ValueError(f"num_classes must be >= 1, got {num_classes}")
        self.num_classes = int(num_classes)
        self.ignore_index = ignore_index
        self.matrix = torch.zeros(num_classes, num_classes, dtype=torch.int64)

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
        valid = (true >= 0) & (true < self.num_classes)
        if self.ignore_index is not None:
            valid &= true != self.ignore_index
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
        return self

    def all_reduce(self, group=None) -> ConfusionMatrix:
        """Sum the matrix over all processes of ``torch.distributed`` (in place); returns self."""
        import torch.distributed as dist

        device = "cuda" if dist.get_backend(group) == "nccl" else "cpu"
        matrix = self.matrix.to(device)
        dist.all_reduce(matrix, group=group)
        self.matrix = matrix.cpu()
        return self

    def reset(self) -> None:
        self.matrix.zero_()

    def scores(self, class_names: Optional[Sequence[str]] = None) -> dict:
        """Pixel accuracy, mean accuracy, mean IoU, frequency-weighted IoU and per-class IoU.

        Classes absent from both ground truth and prediction get IoU ``None`` and are left out
        of the means (as in the DeepLab evaluation).
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
            "pixel_accuracy": float(tp.sum() / total) if total > 0 else float("nan"),
            "mean_accuracy": float(acc.nanmean()),
            "mean_iou": float(iou.nanmean()),
            "fw_iou": float((freq[union > 0] * iou[union > 0]).sum()),
            "per_class_iou": {
                name: (None if torch.isnan(v) else float(v)) for name, v in zip(names, iou)
            },
            "num_pixels": int(total),
        }
