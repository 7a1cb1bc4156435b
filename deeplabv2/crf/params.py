"""CRF parameters, the DeepLab v2 presets, and parameter files."""

from __future__ import annotations

import json
import math
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Optional, Union

from .._files import atomic_write_text

__all__ = ["CRFParams", "PRESETS"]

Matrix = tuple[tuple[float, ...], ...]


@dataclass(frozen=True)
class CRFParams:
    """Parameters of the fully connected CRF (Krähenbühl & Koltun 2011, DeepLab notation).

    Attributes:
        iterations: mean-field iterations.
        bi_w: weight ``w1`` of the appearance (bilateral) kernel.
        bi_xy_std: its spatial standard deviation ``theta_alpha``, in pixels.
        bi_rgb_std: its colour standard deviation ``theta_beta``, in 0..255 intensity units.
        pos_w: weight ``w2`` of the smoothness (Gaussian) kernel.
        pos_xy_std: its spatial standard deviation ``theta_gamma``, in pixels.
        compatibility: None for the Potts model (DeepLab's), or a ``C x C`` label
            compatibility matrix ``M`` in densecrf's convention: the message of kernel ``k`` to
            label ``l`` is ``-w_k sum_l' M[l, l'] (K_k Q)_l'``, so Potts is ``M = -I``. Like
            densecrf, only the symmetric part ``(M + M^T) / 2`` is used (and stored).
    """

    iterations: int = 10
    bi_w: float = 4.0
    bi_xy_std: float = 67.0
    bi_rgb_std: float = 3.0
    pos_w: float = 3.0
    pos_xy_std: float = 1.0
    compatibility: Optional[Matrix] = None

    def __post_init__(self) -> None:
        if isinstance(self.iterations, bool) or not isinstance(self.iterations, int):
            raise ValueError(f"iterations must be an int, got {self.iterations!r}")
        if self.iterations < 0:
            raise ValueError(f"iterations must be >= 0, got {self.iterations}")
        for name in ("bi_w", "pos_w"):
            value = getattr(self, name)
            if not math.isfinite(value) or value < 0:
                raise ValueError(f"{name} must be a finite number >= 0, got {value!r}")
        for name in ("bi_xy_std", "bi_rgb_std", "pos_xy_std"):
            value = getattr(self, name)
            if not math.isfinite(value) or value <= 0:
                raise ValueError(f"{name} must be a finite number > 0, got {value!r}")
        if self.compatibility is not None:
            rows = tuple(tuple(float(v) for v in row) for row in self.compatibility)
            if not rows or any(len(row) != len(rows) for row in rows):
                raise ValueError("compatibility must be a square C x C matrix")
            if not all(math.isfinite(v) for row in rows for v in row):
                raise ValueError("compatibility must hold finite numbers")
            size = range(len(rows))
            symmetric = tuple(tuple(0.5 * (rows[i][j] + rows[j][i]) for j in size) for i in size)
            object.__setattr__(self, "compatibility", symmetric)

    def as_dict(self) -> dict[str, Any]:
        """The parameters as plain JSON-able values (the matrix as a list of lists)."""
        values = asdict(self)
        if self.compatibility is not None:
            values["compatibility"] = [list(row) for row in self.compatibility]
        return values

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> CRFParams:
        """Inverse of :meth:`as_dict`; unknown keys are refused."""
        known = {"iterations", "bi_w", "bi_xy_std", "bi_rgb_std", "pos_w", "pos_xy_std"}
        unknown = set(values) - known - {"compatibility"}
        if unknown:
            raise ValueError(f"unknown CRF parameters {sorted(unknown)}; known: {sorted(known)}")
        return cls(**values)

    @classmethod
    def load(cls, path: Union[str, os.PathLike]) -> CRFParams:
        """Read a parameter file (JSON, as written by :meth:`save` or ``tune_crf.py``)."""
        try:
            values = json.loads(Path(path).read_text(encoding="utf-8"))
        except json.JSONDecodeError as error:
            raise ValueError(f"{path}: not a CRF parameter file (invalid JSON: {error})") from None
        if not isinstance(values, dict):
            raise ValueError(f"{path}: not a CRF parameter file (expected a JSON object)")
        try:
            return cls.from_dict(values)
        except (TypeError, ValueError) as error:
            raise ValueError(f"{path}: {error}") from None

    def save(self, path: Union[str, os.PathLike], force: bool = False) -> Path:
        """Write the parameters as JSON, atomically (an existing file only with ``force``)."""
        text = json.dumps(self.as_dict(), indent=2) + "\n"
        return atomic_write_text(path, text, force=force)


#: The release's test-time settings (``DenseCRF`` layer of the test prototxts, VOC 2012).
PRESETS: dict[str, CRFParams] = {
    "resnet101-voc": CRFParams(10, bi_w=4, bi_xy_std=67, bi_rgb_std=3, pos_w=3, pos_xy_std=1),
    "vgg16-voc": CRFParams(10, bi_w=4, bi_xy_std=65, bi_rgb_std=3, pos_w=2, pos_xy_std=2),
}
