"""Segmentation metrics from a confusion matrix: pixel/mean accuracy, mean IoU, fwIoU, and
per-class IoU, precision and recall."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from typing import Any, Optional, Union

import numpy as np
import torch

from .errors import LabelError

__all__ = ["ConfusionMatrix"]

ArrayLike = Union[np.ndarray, torch.Tensor]

#: the values a ``uint8`` target can hold: the rows of a deferred count
_TARGET_VALUES = 256


class ConfusionMatrix:
    """Accumulates a ``(num_classes, num_classes)`` confusion matrix (rows: ground truth).

    ``update(prediction, target)`` takes label maps of equal shape (numpy or torch, any device:
    the counting is a ``bincount`` where the data are); pixels whose target is ``ignore_index``
    are skipped. Target values that are neither a class (``0..num_classes-1``) nor
    ``ignore_index`` are a dataset problem: they are left out of the scores and counted in
    :attr:`invalid_labels` (value -> pixels), or raise a :class:`~deeplabv2.errors.LabelError`
    with ``strict=True``. Matrices merge with :meth:`merge` or :meth:`all_reduce`
    (``torch.distributed``), so evaluation can be split across processes.

    With ``allow_unsure=True`` predictions may hold ``ignore_index`` too ("not sure", as
    pseudo-labels do): such pixels are left out of the matrix and counted per ground-truth
    class in :attr:`unsure`; :meth:`scores` counts them as misses unless
    ``confident_only=True``. Without it such a prediction is an error, as any value outside
    the classes.
    """

    def __init__(
        self,
        num_classes: int,
        ignore_index: Optional[int] = 255,
        strict: bool = False,
        *,
        allow_unsure: bool = False,
    ) -> None:
        if num_classes < 1:
            raise ValueError(f"num_classes must be >= 1, got {num_classes}")
        self.num_classes = int(num_classes)
        self.ignore_index = ignore_index
        self.strict = strict
        self.allow_unsure = allow_unsure and ignore_index is not None
        self._matrix = torch.zeros(num_classes, num_classes, dtype=torch.int64)
        self._unsure = torch.zeros(num_classes, dtype=torch.int64)
        self._invalid: Counter[int] = Counter()
        #: deferred counts: ``(256, columns) int64`` on the data's device, and the map's name
        self._pending: list[tuple[torch.Tensor, Optional[str]]] = []

    @property
    def matrix(self) -> torch.Tensor:
        """``(num_classes, num_classes) int64`` CPU counts (rows: ground truth)."""
        self.flush()
        return self._matrix

    @property
    def unsure(self) -> torch.Tensor:
        """``(num_classes,) int64``: pixels of each ground-truth class predicted
        ``ignore_index`` (only with ``allow_unsure``)."""
        self.flush()
        return self._unsure

    @property
    def invalid_labels(self) -> Counter[int]:
        """Label values outside the classes and ``ignore_index`` seen so far -> pixel count."""
        self.flush()
        return self._invalid

    def update(
        self,
        prediction: ArrayLike,
        target: ArrayLike,
        *,
        defer: bool = False,
        name: Optional[str] = None,
    ) -> None:
        """Add one or more label maps: ``prediction`` and ``target`` integer, same shape.

        With ``defer`` and a ``uint8`` target the counts stay on the data's device until
        :meth:`flush` (no host synchronisation); errors are raised then. Other targets are
        counted at once. Errors name the label map ``name``.
        """
        pred = torch.as_tensor(prediction)
        true = torch.as_tensor(target)
        prefix = f"{name}: " if name else ""
        if pred.shape != true.shape:
            raise ValueError(
                f"{prefix}prediction {tuple(pred.shape)} and target {tuple(true.shape)} differ "
                "in shape"
            )
        if pred.is_floating_point() or true.is_floating_point():
            raise ValueError("prediction and target must be integer label maps, not scores")
        true = true.to(pred.device).reshape(-1)
        pred = pred.reshape(-1).long()
        if defer and true.dtype == torch.uint8:
            self._pending.append((self._deferred_counts(pred, true.long()), name))
            return
        true = true.long()
        in_range = (true >= 0) & (true < self.num_classes)
        ignored = torch.zeros_like(in_range)
        if self.ignore_index is not None:
            ignored = true == self.ignore_index
        valid = torch.logical_and(in_range, ~ignored)
        invalid = ~in_range & ~ignored
        if invalid.any():
            values, counts = torch.unique(true[invalid], return_counts=True)
            found = dict(zip(values.tolist(), counts.tolist()))
            if self.strict:
                raise LabelError(
                    prefix + _invalid_message(found, self.num_classes, self.ignore_index)
                )
            self._invalid.update(found)
        # one bincount, no masked copies: row = target, column = prediction (column k: not
        # sure, with allow_unsure), and one last bin for the pixels not scored
        k = self.num_classes
        columns = k + 1 if self.allow_unsure else k
        if self.allow_unsure and self.ignore_index is not None:
            pred = torch.where(pred.eq(self.ignore_index), k, pred)
        if (valid & ((pred < 0) | (pred >= columns))).any():
            raise ValueError(f"{prefix}predicted labels must be in 0..{k - 1}")
        index = torch.where(valid, true * columns + pred, k * columns)
        counts = torch.bincount(index, minlength=k * columns + 1)[:-1].reshape(k, columns).cpu()
        self._matrix += counts[:, :k]
        if self.allow_unsure:
            self._unsure += counts[:, k]

    def _deferred_counts(self, pred: torch.Tensor, true: torch.Tensor) -> torch.Tensor:
        """``(256, columns) int64`` counts on the data's device: row = target value, column =
        predicted class, then "not sure" (with ``allow_unsure``), then "outside the classes"."""
        k = self.num_classes
        columns = k + 2 if self.allow_unsure else k + 1
        column = torch.where((pred >= 0) & (pred < k), pred, columns - 1)
        if self.allow_unsure:
            assert self.ignore_index is not None  # allow_unsure needs one
            column = torch.where(pred.eq(self.ignore_index), k, column)
        index = true * columns + column
        if index.device.type == "cpu":
            counts = torch.bincount(index, minlength=_TARGET_VALUES * columns)
        else:  # bincount on a GPU waits for the largest value to size its output
            counts = torch.zeros(_TARGET_VALUES * columns, dtype=torch.int64, device=index.device)
            counts.scatter_add_(0, index, torch.ones_like(index))
        return counts.reshape(-1, columns)

    def flush(self) -> None:
        """Fold the deferred counts in (one copy to the host for all of them), in the order
        they were added; ValueError (a prediction outside the classes) or, with ``strict``,
        :class:`~deeplabv2.errors.LabelError` naming the first label map that has one (the
        maps before it are counted)."""
        if not self._pending:
            return
        pending, self._pending = self._pending, []
        counts = torch.stack([c for c, _ in pending]).cpu()
        k = self.num_classes
        rows = torch.arange(_TARGET_VALUES)
        ignored = rows == (self.ignore_index if self.ignore_index is not None else -1)
        scored = (rows < k) & ~ignored
        invalid = (rows >= k) & ~ignored
        for (_, name), count in zip(pending, counts):
            prefix = f"{name}: " if name else ""
            if int(count[scored, -1].sum()):
                raise ValueError(f"{prefix}predicted labels must be in 0..{k - 1}")
            found = {int(v): int(n) for v, n in zip(rows[invalid], count[invalid].sum(1)) if n}
            if found and self.strict:
                raise LabelError(prefix + _invalid_message(found, k, self.ignore_index))
            self._invalid.update(found)
            self._matrix[rows[scored]] += count[scored, :k]
            if self.allow_unsure:
                self._unsure[rows[scored]] += count[scored, k]

    def merge(self, other: ConfusionMatrix) -> ConfusionMatrix:
        """Add another matrix of the same size in place; returns self."""
        if other.num_classes != self.num_classes:
            raise ValueError(f"cannot merge {other.num_classes} classes into {self.num_classes}")
        self.flush()
        self._matrix += other.matrix
        self._unsure += other.unsure
        self._invalid.update(other.invalid_labels)
        return self

    def all_reduce(self, group: Any = None) -> ConfusionMatrix:
        """Sum the matrix, the unsure and the invalid label counts over all processes of
        ``torch.distributed``, in place; returns self.

        A collective: every process must call it, or the others wait for the process group's
        timeout. Call it in ``with deeplabv2.distributed.collective(ranks):``, which first
        waits until every rank got there and stops if one failed (as ``evaluate`` does).
        """
        import torch.distributed as dist

        device = "cuda" if dist.get_backend(group) == "nccl" else "cpu"
        self.flush()
        for name in ("_matrix", "_unsure"):
            summed = getattr(self, name).to(device)
            dist.all_reduce(summed, group=group)
            setattr(self, name, summed.cpu())
        gathered: list = [None] * dist.get_world_size(group)
        dist.all_gather_object(gathered, dict(self._invalid), group=group)
        self._invalid = sum((Counter(g) for g in gathered), Counter())
        return self

    def reset(self) -> None:
        self._pending.clear()
        self._matrix.zero_()
        self._unsure.zero_()
        self._invalid.clear()

    def invalid_label_message(self) -> Optional[str]:
        """One sentence about the invalid label values seen, or None if there were none."""
        if not self.invalid_labels:
            return None
        return _invalid_message(self.invalid_labels, self.num_classes, self.ignore_index)

    def scores(
        self,
        class_names: Optional[Sequence[str]] = None,
        *,
        confident_only: bool = False,
        unsure_as: Optional[int] = None,
        mean_over: Optional[Sequence[int]] = None,
    ) -> dict:
        """Pixel accuracy, mean accuracy, mean IoU, frequency-weighted IoU and per-class IoU,
        precision and recall.

        Classes absent from both ground truth and prediction get IoU ``None`` and are left out
        of the means (as in the DeepLab evaluation); a class never predicted has precision
        ``None``, one absent from the ground truth recall ``None``. A score with nothing to
        average (no pixels at all) is ``None``, never NaN, so the result is valid JSON.

        Pixels predicted ``ignore_index`` (:attr:`unsure`, with ``allow_unsure``) count as
        misses of their ground-truth class (in its IoU, recall, the accuracies and
        ``num_pixels``) unless ``confident_only``, which scores the other pixels only, or
        ``unsure_as``, which counts them as predictions of that class (IRN's
        ``step/eval_sem_seg.py`` turns a pseudo-label's 255 into 0, the background).

        ``mean_over`` (class indices; None: all) is what the class means (``mean_accuracy``,
        ``mean_iou``, ``fw_iou``) average over; the per-class scores and ``pixel_accuracy``
        stay those of the whole matrix. The SYNTHIA -> Cityscapes papers' 13-class mIoU is the
        16-class matrix's IoUs averaged over 13 classes.
        """
        if confident_only and unsure_as is not None:
            raise ValueError("confident_only and unsure_as are two different scorings: pick one")
        if unsure_as is not None and not 0 <= unsure_as < self.num_classes:
            raise ValueError(
                f"unsure_as must be a class in 0..{self.num_classes - 1}, got {unsure_as}"
            )
        chosen = torch.ones(self.num_classes, dtype=torch.bool)
        if mean_over is not None:
            if not mean_over or not all(0 <= i < self.num_classes for i in mean_over):
                raise ValueError(
                    f"mean_over must name classes in 0..{self.num_classes - 1}, got "
                    f"{list(mean_over)}"
                )
            chosen = torch.zeros(self.num_classes, dtype=torch.bool)
            chosen[list(mean_over)] = True
        m = self.matrix.to(torch.float64)
        unsure = self.unsure.to(torch.float64)
        if unsure_as is not None:
            m = m.clone()
            m[:, unsure_as] += unsure
        tp = m.diag()
        gt = m.sum(1) + (0 if confident_only or unsure_as is not None else unsure)
        pred = m.sum(0)
        union = gt + pred - tp
        total = gt.sum()
        iou = _ratio(tp, union)
        acc = _ratio(tp, gt)
        weight = gt[chosen].sum()
        weighted = chosen & (union > 0)
        names = list(class_names) if class_names else [str(i) for i in range(self.num_classes)]

        def per_class(values: torch.Tensor) -> dict:
            return {name: (None if torch.isnan(v) else float(v)) for name, v in zip(names, values)}

        return {
            "pixel_accuracy": float(tp.sum() / total) if total > 0 else None,
            "mean_accuracy": _mean(acc[chosen]),
            "mean_iou": _mean(iou[chosen]),
            "fw_iou": float((gt * iou)[weighted].sum() / weight) if weight > 0 else None,
            "per_class_iou": per_class(iou),
            "per_class_precision": per_class(_ratio(tp, pred)),
            "per_class_recall": per_class(acc),
            "num_pixels": int(total),
            "unsure_pixels": 0 if confident_only else int(unsure.sum()),
            "invalid_label_pixels": {str(k): v for k, v in sorted(self.invalid_labels.items())},
        }


def _ratio(part: torch.Tensor, whole: torch.Tensor) -> torch.Tensor:
    """``part / whole`` per class, NaN where ``whole`` is 0 (undefined, not zero)."""
    return torch.where(whole > 0, part / whole.clamp(min=1), torch.nan)


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
