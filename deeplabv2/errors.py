"""The exceptions this library raises for bad input, listed in ``docs/errors.md``.

Every class derives from :class:`DeepLabV2Error` and from the built-in exception a caller would
catch without knowing this library (``ValueError``, ``RuntimeError``, ``FileExistsError``), so
``except ValueError`` keeps working and ``except deeplabv2.errors.DeepLabV2Error`` catches them
all. This module imports nothing, so every layer of the package can use it.
"""

from __future__ import annotations

__all__ = [
    "CaffeFormatError",
    "DatasetError",
    "ExportVerificationError",
    "DeepLabV2Error",
    "ImageError",
    "ImageMemoryError",
    "ImageSizeError",
    "LabelError",
    "OutputExistsError",
    "SeenDataError",
    "WeightsFormatError",
    "WeightsMismatchError",
    "WeightsUnavailableError",
]


class DeepLabV2Error(Exception):
    """Base class of every error this library raises on purpose."""


class WeightsFormatError(DeepLabV2Error, ValueError):
    """A weights file cannot be read as weights: corrupt, truncated, or not a state dict."""


class CaffeFormatError(WeightsFormatError):
    """The bytes are not a (complete, sane) Caffe ``NetParameter`` (``.caffemodel``)."""


class WeightsMismatchError(DeepLabV2Error, ValueError):
    """Weights do not fit the model: missing, unexpected or mis-shaped entries, or no head."""


class WeightsUnavailableError(DeepLabV2Error, RuntimeError):
    """Weights could not be fetched (offline, no network, or not in the cache)."""


class ImageError(DeepLabV2Error, ValueError):
    """An image cannot be used: unreadable file, unsupported mode, dtype or value range."""


class ImageSizeError(ImageError):
    """An image is too small for the network or larger than the configured pixel limit."""


class ImageMemoryError(ImageSizeError, MemoryError):
    """An image whose full-size logits or probabilities do not fit in memory (smaller tiles do
    not help: they bound the network's memory, not this buffer). Also a :class:`MemoryError`."""


class LabelError(DeepLabV2Error, ValueError):
    """A label map holds values that are neither a class index nor the ignore label."""


class DatasetError(DeepLabV2Error, ValueError):
    """A dataset is empty or malformed (list files, missing folders)."""


class SeenDataError(DeepLabV2Error, ValueError):
    """Weights would be scored on images they were trained on (their lineage names the split);
    ``allow_seen_data=True`` / ``--allow-seen-data`` scores them anyway."""


class ExportVerificationError(DeepLabV2Error, RuntimeError):
    """An exported model, run in its runtime, does not reproduce the PyTorch model."""


class OutputExistsError(DeepLabV2Error, FileExistsError):
    """An output file exists and overwriting it was not asked for (``force`` / ``--force``)."""
