"""CRF parameters and the DeepLab v2 presets."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

__all__ = ["CRFParams", "PRESETS"]


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
    """

    iterations: int = 10
    bi_w: float = 4.0
    bi_xy_std: float = 67.0
    bi_rgb_std: float = 3.0
    pos_w: float = 3.0
    pos_xy_std: float = 1.0

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

    def as_dict(self) -> dict[str, float]:
        """The parameters as a plain dict (e.g. for JSON)."""
        return asdict(self)


#: The release's test-time settings (``DenseCRF`` layer of the test prototxts, VOC 2012).
PRESETS: dict[str, CRFParams] = {
    "resnet101-voc": CRFParams(10, bi_w=4, bi_xy_std=67, bi_rgb_std=3, pos_w=3, pos_xy_std=1),
    "vgg16-voc": CRFParams(10, bi_w=4, bi_xy_std=65, bi_rgb_std=3, pos_w=2, pos_xy_std=2),
}
