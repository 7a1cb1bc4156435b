"""CRF parameters, the DeepLab v2 presets, parameter files, and the pseudo-label recipes of
weakly supervised segmentation (PSA, IRN) with their sources."""

from __future__ import annotations

import json
import math
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Optional, Union

from .._files import atomic_write_text

__all__ = ["CRFParams", "PRESETS", "PSEUDO_LABEL_RECIPES", "PseudoLabelRecipe"]

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


#: how a recipe turns CAMs into a background score (:class:`PseudoLabelRecipe`)
BACKGROUNDS = ("constant", "power")
#: where a recipe's unary comes from: the scores (``unary_from_softmax``) or their arg-max
#: (``unary_from_labels``)
UNARIES = ("probs", "labels")


@dataclass(frozen=True)
class PseudoLabelRecipe:
    """How CAMs or class scores become pseudo-labels with the dense CRF.

    Attributes:
        params: the CRF's kernels and iterations (DeepLab notation: pydensecrf's
            ``addPairwiseBilateral(sxy, srgb, compat)`` is ``bi_xy_std, bi_rgb_std, bi_w`` and
            ``addPairwiseGaussian(sxy, compat)`` is ``pos_xy_std, pos_w``; a Potts ``compat`` of
            10 is the weight 10).
        unary: ``"probs"``: ``-log(clip(p, 1e-5, 1))`` of the scores (pydensecrf's
            ``unary_from_softmax``); ``"labels"``: from their arg-max, ``-log(gt_prob)`` for
            that class and ``-log((1 - gt_prob) / (C - 1))`` for the others (pydensecrf's
            ``unary_from_labels`` with ``zero_unsure=False``).
        gt_prob: the confidence in the arg-max of the ``"labels"`` unary, in (0, 1).
        background: for CAMs (which have no background channel): ``"constant"``, a background
            score of ``value`` everywhere (IRN's ``conf_fg_thres`` / ``conf_bg_thres``), or
            ``"power"``, ``(1 - max_k cam_k) ** value`` (PSA's ``alpha``).
        values: one background value per CRF run. Two runs give IRN's and PSA's confident
            labels: the first (more background) decides the foreground, the second (less
            background) the background; a pixel that is foreground in the second run but
            background in the first is unsure (255).
        background_wins: with two runs, a pixel that is foreground in the first run but
            background in the second: background (PSA) or the first run's class (IRN).
        source: where the values come from.
    """

    params: CRFParams = CRFParams()
    unary: str = "probs"
    gt_prob: float = 0.7
    background: str = "constant"
    values: tuple[float, ...] = ()
    background_wins: bool = False
    source: str = ""

    def __post_init__(self) -> None:
        if self.unary not in UNARIES:
            raise ValueError(f"unary must be one of {UNARIES}, got {self.unary!r}")
        if not 0 < self.gt_prob < 1:
            raise ValueError(f"gt_prob must be in (0, 1), got {self.gt_prob!r}")
        if self.background not in BACKGROUNDS:
            raise ValueError(f"background must be one of {BACKGROUNDS}, got {self.background!r}")
        values = tuple(float(v) for v in self.values)
        object.__setattr__(self, "values", values)
        if len(values) > 2:
            raise ValueError(f"a recipe has one or two background values, got {values}")
        if any(not math.isfinite(v) for v in values):
            raise ValueError(f"background values must be finite, got {values}")
        if self.background == "power" and any(v <= 0 for v in values):
            raise ValueError(f"the background's power (alpha) must be > 0, got {values}")
        if self.background == "constant" and any(not 0 <= v <= 1 for v in values):
            raise ValueError(f"a constant background score must be in [0, 1], got {values}")

    def as_dict(self) -> dict[str, Any]:
        """What decides the labels, as plain JSON-able values (``source``, a note, left out)."""
        values = asdict(self)
        del values["source"]
        values["params"] = self.params.as_dict()
        values["values"] = list(self.values)
        return values


#: The settings of the papers' published code, in DeepLab notation.
PSEUDO_LABEL_RECIPES: dict[str, PseudoLabelRecipe] = {
    # PSA (Ahn & Kwak, CVPR 2018), github.com/jiwoon-ahn/psa: tool/imutils.py crf_inference
    # (t=10, addPairwiseGaussian(sxy=3, compat=3), addPairwiseBilateral(sxy=80, srgb=13,
    # compat=10), unary_from_softmax); infer_cls.py _crf_with_alpha (background
    # (1 - max cam) ** alpha; --low_alpha 4, --high_alpha 32); voc12/data.py
    # VOC12AffDataset.__getitem__ (label = la; la == 0 -> 255; ha == 0 -> 0).
    "psa": PseudoLabelRecipe(
        CRFParams(10, bi_w=10, bi_xy_std=80, bi_rgb_std=13, pos_w=3, pos_xy_std=3),
        unary="probs",
        background="power",
        values=(4.0, 32.0),
        background_wins=True,
        source="jiwoon-ahn/psa: tool/imutils.py crf_inference, infer_cls.py _crf_with_alpha, "
        "voc12/data.py VOC12AffDataset",
    ),
    # IRN (Ahn, Cho & Kwak, CVPR 2019), github.com/jiwoon-ahn/irn: misc/imutils.py
    # crf_inference_label (t=10, gt_prob=0.7, unary_from_labels(zero_unsure=False),
    # addPairwiseGaussian(sxy=3, compat=3), addPairwiseBilateral(sxy=50, srgb=5, compat=10));
    # step/cam_to_ir_label.py _work (CAMs padded with conf_fg_thres / conf_bg_thres as class 0;
    # conf = fg; fg == 0 -> 255; fg + bg == 0 -> 0); run_sample.py (--conf_fg_thres 0.30,
    # --conf_bg_thres 0.05).
    "irn": PseudoLabelRecipe(
        CRFParams(10, bi_w=10, bi_xy_std=50, bi_rgb_std=5, pos_w=3, pos_xy_std=3),
        unary="labels",
        gt_prob=0.7,
        background="constant",
        values=(0.30, 0.05),
        background_wins=False,
        source="jiwoon-ahn/irn: misc/imutils.py crf_inference_label, "
        "step/cam_to_ir_label.py, run_sample.py",
    ),
}
