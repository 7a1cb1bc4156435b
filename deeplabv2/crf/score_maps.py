"""Score files for pseudo-labels: class probabilities, or CAMs in IRN's and PSA's layouts.

Layouts read by :func:`load_scores` (one file per image, named after it):

* ``<stem>.npy`` / ``<stem>_probs.npy`` holding a ``(C, H, W)`` float array: class scores or
  probabilities with the background as channel 0, channel ``c`` = class ``c`` (``deeplabv2
  predict --probs`` writes ``<stem>_probs.npy`` as float16);
* ``<stem>.npz`` with ``high_res`` ``(K, H, W)`` foreground CAMs in [0, 1] and ``keys`` ``(K,)``
  their 0-based foreground class indices (IRN's ``step/make_cam.py`` fields; the background is
  *not* among them: class ``keys[k] + 1`` of the label PNG is CAM ``k``, 0 the background);
* ``<stem>.npz`` with one array (or one called ``probs``): ``(C, H, W)`` scores as above;
* ``<stem>.npy`` holding a pickled dict, as IRN (``{"keys", "high_res", ...}``) and PSA
  (``{class index: (H, W) CAM}``) save them with ``np.save``: read only with
  ``allow_pickle=True``, because unpickling a file runs code that the file chooses.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional, Union

import numpy as np

from .npy_files import NpzFields, open_scores

__all__ = ["SCORE_NAMES", "Scores", "check_scores", "find_scores", "load_scores"]

#: the file names tried for an image ``<stem>.<ext>``, in this order
SCORE_NAMES = ("{stem}.npz", "{stem}.npy", "{stem}_probs.npy")


@dataclass(frozen=True)
class Scores:
    """One image's scores, checked when made (from a file or in memory).

    Attributes:
        values: ``(C, H, W) float32``: class scores (``keys`` None; channel ``c`` is class
            ``c``, 0 the background; ``C >= 2``) or foreground CAMs in [0, 1] (``keys`` given).
            Any float array is taken (stored as contiguous float32).
        keys: ``(K,) int64`` 0-based foreground class indices of the CAMs (distinct, in
            0..253), or None.
        path: the file they came from (for messages).

    ValueError (naming ``path``) for a wrong shape or dtype, NaN or infinite values, negative
    scores, CAMs above 1, or keys that do not fit (:func:`check_scores`).
    """

    values: np.ndarray
    keys: Optional[np.ndarray] = None
    path: str = ""

    def __post_init__(self) -> None:
        values, keys = check_scores(self.values, self.keys, self.path)
        object.__setattr__(self, "values", values)  # frozen: set once, here
        object.__setattr__(self, "keys", keys)

    @property
    def cams(self) -> bool:
        """Whether these are foreground CAMs (a background score is still to be added)."""
        return self.keys is not None

    def classes(self) -> np.ndarray:
        """``(C,) int64``: the label of each channel once a CAM's background is channel 0."""
        if self.keys is None:
            return np.arange(self.values.shape[0], dtype=np.int64)
        return np.concatenate(([0], self.keys + 1)).astype(np.int64)


def check_scores(
    values: Any, keys: Any = None, path: str = ""
) -> tuple[np.ndarray, Optional[np.ndarray]]:
    """``values`` as ``(C, H, W) float32`` and ``keys`` as ``(K,) int64`` (or None), checked as
    :class:`Scores` says; ValueError naming ``path`` (or "Scores" in memory) otherwise."""
    where = path or "Scores"
    what = "scores" if keys is None else "CAMs (high_res)"
    values = _float_array(values, what, where)
    if keys is None:
        if values.shape[0] < 2:
            raise ValueError(f"{where}: scores need at least 2 classes, got {values.shape[0]}")
        return values, None
    keys = np.asarray(keys)  # IRN's keys are a torch tensor in its pickles
    if keys.ndim != 1 or not np.issubdtype(keys.dtype, np.integer):
        raise ValueError(
            f"{where}: keys must be a (K,) integer array, got {keys.dtype} {keys.shape}"
        )
    if len(keys) != values.shape[0]:
        last = len(keys) == values.shape[2]
        raise ValueError(
            f"{where}: {len(keys)} keys for {values.shape[0]} CAMs"
            + (f" (shape {values.shape} looks channels-last (H, W, K): save the CAMs as "
               "(K, H, W), np.transpose(a, (2, 0, 1)))" if last else "")
            + "; keys are the CAMs' 0-based foreground classes, without the background (IRN's "
            "make_cam.py layout)"
        )  # fmt: skip
    if len(keys) and (keys.min() < 0 or keys.max() > 253 or len(set(keys.tolist())) != len(keys)):
        raise ValueError(f"{where}: keys must be distinct class indices in 0..253, got {keys}")
    if values.size and values.max() > 1:
        raise ValueError(f"{where}: CAMs must be in [0, 1] (normalised), max {values.max()}")
    return values, keys.astype(np.int64)


def find_scores(scores_dir: Union[str, os.PathLike], stem: str) -> Path:
    """The score file of the image ``<stem>.<ext>`` in ``scores_dir`` (:data:`SCORE_NAMES`);
    FileNotFoundError if there is none, ValueError if several would fit."""
    found = [Path(scores_dir) / n.format(stem=stem) for n in SCORE_NAMES]
    found = [p for p in found if p.is_file()]
    if not found:
        names = ", ".join(n.format(stem=stem) for n in SCORE_NAMES)
        raise FileNotFoundError(f"no scores for the image {stem!r} in {scores_dir} (tried {names})")
    if len(found) > 1:
        raise ValueError(
            f"several score files for the image {stem!r}: {', '.join(map(str, found))}; keep one"
        )
    return found[0]


def _from_mapping(fields: Any, path: str) -> Scores:
    """CAMs from ``high_res`` + ``keys``, PSA's ``{class: CAM}``, or one ``probs`` array."""
    names = list(fields.keys())
    if "high_res" in names and "keys" in names:
        return Scores(fields["high_res"], fields["keys"], path)
    if "high_res" in names or "keys" in names:
        raise ValueError(
            f"{path}: an IRN CAM file needs both 'high_res' (K, H, W) CAMs and 'keys' (K,) their "
            f"0-based foreground classes; it has the fields {names}"
        )
    if names and all(isinstance(k, (int, np.integer)) for k in names):  # PSA's dict
        keys = np.asarray(names, dtype=np.int64)
        return Scores(np.stack([np.asarray(fields[k]) for k in names]), keys, path)
    if "probs" in names or len(names) == 1:
        return Scores(fields["probs" if "probs" in names else names[0]], None, path)
    raise ValueError(
        f"{path}: unknown layout with the fields {names}; expected 'high_res' and 'keys' (CAMs), "
        "or one (C, H, W) array (scores)"
    )


def _float_array(array: Any, what: str, path: str) -> np.ndarray:
    array = np.asarray(array)
    if array.ndim != 3 or not np.issubdtype(array.dtype, np.floating):
        raise ValueError(
            f"{path}: {what} must be a (C, H, W) float array, got {array.dtype} of shape "
            f"{array.shape}"
        )
    array = np.ascontiguousarray(array, dtype=np.float32)
    if not np.isfinite(array).all():
        raise ValueError(f"{path}: {what} contain NaN or infinite values")
    if array.size and array.min() < 0:
        raise ValueError(f"{path}: {what} contain negative values; give probabilities or CAMs")
    return array


def load_scores(
    path: Union[str, os.PathLike],
    *,
    allow_pickle: bool = False,
    size: Optional[tuple[int, int]] = None,
) -> Scores:
    """Read one image's scores or CAMs (the layouts of this module's docstring).

    ``allow_pickle=True`` also reads pickled dicts (IRN's and PSA's ``.npy``); unpickling runs
    code from the file, so it is off by default and such a file raises ValueError saying so.
    ``size``: the image's ``(H, W)``; an array declaring more pixels per channel (or more than
    :data:`~deeplabv2.crf.npy_files.MAX_CHANNELS` channels) is refused before its data is read,
    and only the fields the layout needs are read (:mod:`deeplabv2.crf.npy_files`).
    ValueError names the file for any other bad content: unknown layout, wrong shapes or
    dtypes, NaN or infinite values, negative scores, CAMs above 1, keys that do not match, or a
    file that cannot be read at all (not numpy, truncated, a broken pickle).
    """
    path = str(path)
    pixels = None if size is None else size[0] * size[1]
    loaded = open_scores(path, allow_pickle=allow_pickle, pixels=pixels)
    if isinstance(loaded, NpzFields):
        with loaded:
            return _from_mapping(loaded, path)
    if isinstance(loaded, dict):  # a pickle file
        return _from_mapping(loaded, path)
    if not isinstance(loaded, np.ndarray):
        raise ValueError(f"{path}: a pickled {type(loaded).__name__}, not a dict of CAMs")
    if loaded.dtype == object:
        item = loaded.item() if loaded.shape == () else None
        if not isinstance(item, dict):
            raise ValueError(f"{path}: a pickled object that is not a dict of CAMs")
        return _from_mapping(item, path)
    return Scores(loaded, None, path)
