"""examples/tune_crf.py: the paper's grid search and the gradient-learned CRF on generated data."""

from __future__ import annotations

import json

import numpy as np
import pytest

from deeplabv2.cli import main
from deeplabv2.crf import CRFParams, DenseCRF

from ..voc_fixture import write_voc
from .test_train import load_example

tune_crf = load_example("tune_crf")


def two_region_items() -> list:
    image = np.zeros((40, 40, 3), np.uint8)
    image[:, 20:] = (200, 180, 160)
    truth = np.broadcast_to((np.arange(40) >= 20).astype(np.int64), (40, 40)).copy()
    probs = np.zeros((2, 40, 40), np.float32)
    probs[1] = np.clip((np.arange(40) - 14) / 12, 0.05, 0.95)[None, :]
    probs[0] = 1 - probs[1]
    return [
        (image, probs, truth),
        (image[:, ::-1].copy(), probs[:, :, ::-1].copy(), truth[:, ::-1].copy()),
    ]


def test_grid_search_returns_the_best_of_its_grid() -> None:
    grid = {"bi_w": [0, 10], "bi_xy_std": [10], "bi_rgb_std": [10, 1000]}
    start = CRFParams(iterations=5)
    table = tune_crf.grid_search(two_region_items(), grid, start, device="cpu")
    assert len(table) == 4
    assert [m for _, m in table] == sorted((m for _, m in table), reverse=True)
    best, miou = table[0]
    assert (best.bi_w, best.bi_xy_std, best.bi_rgb_std) == (10, 10, 10) and miou == 1.0
    assert best.iterations == 5 and table[-1][1] < 1.0


def test_gradient_tuning_improves_a_bad_crf_and_the_file_round_trips(tmp_path, voc_safetensors):
    tune, held_out = tune_crf.synthetic_items(6, seed=0), tune_crf.synthetic_items(6, seed=1)
    bad = CRFParams(iterations=5, bi_w=0.05, bi_xy_std=8, bi_rgb_std=12, pos_w=0.05, pos_xy_std=1)
    learned = tune_crf.gradient_search(tune, bad, steps=30, lr=0.2, device="cpu")
    assert learned.bi_w > 10 * bad.bi_w  # the appearance kernel was worth strengthening
    before = tune_crf.miou(held_out, bad, "cpu")
    after = tune_crf.miou(held_out, learned, "cpu")
    assert after > before + 0.02, (before, after)
    with_matrix = tune_crf.gradient_search(tune, bad, steps=10, lr=0.2, compatibility=True)
    assert with_matrix.compatibility is not None and len(with_matrix.compatibility) == 3
    # the parameter file goes through `deeplabv2 eval --crf-params`
    path = learned.save(tmp_path / "crf.json")
    root = write_voc(tmp_path / "voc")
    out = tmp_path / "r.json"
    argv = ["eval", "--data", str(root), "--weights", str(voc_safetensors), "--quiet"]
    assert main([*argv, "--limit", "1", "--crf-params", str(path), "--out", str(out)]) == 0
    crf = json.loads(out.read_text())["settings"]["crf"]
    assert crf["bi_w"] == pytest.approx(learned.bi_w) and crf["iterations"] == 5
    assert DenseCRF.from_file(path).params == learned
