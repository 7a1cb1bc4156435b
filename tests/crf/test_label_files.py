"""``crf``'s label files are what the papers' scripts read: 8-bit grayscale class indices that
``imageio.imread`` (IRN's ``voc12/dataloader.py`` and ``step/eval_sem_seg.py``) returns as
``(H, W)``; ``--palette`` writes VOC-palette PNGs; ``score`` and the datasets read both."""

from __future__ import annotations

import imageio.v2 as imageio
import numpy as np
from PIL import Image

from deeplabv2.cli import main
from deeplabv2.data.images import read_label

from .test_pseudo import tiny_inputs


def test_default_labels_read_by_imageio_are_class_indices(tmp_path, capsys):
    images, scores = tiny_inputs(tmp_path, stems=("a", "b"))
    gray, palette = tmp_path / "ir_label", tmp_path / "palette"
    common = [str(images), str(scores), "--crf-params", "irn", "--crf-workers", "0", "--quiet"]
    assert main(["crf", *common, "--out", str(gray)]) == 0
    assert main(["crf", *common, "--out", str(palette), "--palette"]) == 0
    for stem in ("a", "b"):
        as_irn_reads = imageio.imread(gray / f"{stem}.png")
        assert as_irn_reads.shape == (65, 81) and as_irn_reads.dtype == np.uint8
        assert set(np.unique(as_irn_reads)) <= {0, 8, 15, 255}  # keys 7, 14 -> classes 8, 15
        assert len(set(np.unique(as_irn_reads))) >= 2
        with Image.open(palette / f"{stem}.png") as image:
            assert image.mode == "P"
        assert imageio.imread(palette / f"{stem}.png").ndim == 3  # why it is not the default
        np.testing.assert_array_equal(read_label(palette / f"{stem}.png"), as_irn_reads)
    assert main(["score", str(gray), "--labels", str(palette), "--workers", "1"]) == 0
    assert "mean IoU (ignored_as_wrong): 100.00 %" in capsys.readouterr().out


def test_resuming_a_palette_folder_without_palette_is_refused(tmp_path, capsys):
    images, scores = tiny_inputs(tmp_path, stems=("a", "b"))
    out = tmp_path / "out"
    common = [str(images), str(scores), "--out", str(out), "--crf-params", "irn",
              "--crf-workers", "0", "--quiet"]  # fmt: skip
    assert main(["crf", *common, "--palette"]) == 0
    (out / "b.png").unlink()
    assert main(["crf", *common]) == 1
    assert "png: palette -> grayscale" in capsys.readouterr().err
    assert main(["crf", *common, "--palette"]) == 0
