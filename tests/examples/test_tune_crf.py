"""examples/tune_crf.py: the paper's grid search and the gradient-learned CRF on generated data."""

from __future__ import annotations

import json
import sys

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


# -- refused inputs: nothing is computed or written --------------------------------------------


def run_main(monkeypatch, *argv: str) -> None:
    monkeypatch.setattr(sys, "argv", ["tune_crf.py", *argv])
    tune_crf.main()


QUICK = ("--synthetic", "4", "--method", "gradient", "--steps", "1")


@pytest.mark.parametrize(
    "option",
    [
        ("--holdout", "-1"),
        ("--holdout", "1.5"),
        ("--holdout", "0"),
        ("--holdout", "1"),
        ("--holdout", "nan"),
        ("--lr", "1e9"),
        ("--lr", "0"),
        ("--lr", "nan"),
        ("--steps", "0"),
        ("--bi-w", "-1"),
        ("--bi-xy-std", "0"),
        ("--bi-rgb-std", "inf"),
        ("--synthetic", "-3"),
        ("--synthetic", "1"),
    ],
)
def test_out_of_range_options_are_refused(option, tmp_path, monkeypatch, capsys) -> None:
    out = tmp_path / "crf.json"
    with pytest.raises(SystemExit) as stopped:
        run_main(monkeypatch, *QUICK, *option, "--out", str(out))
    assert stopped.value.code == 2
    assert f"argument {option[0]}" in capsys.readouterr().err
    assert not out.exists()


def test_a_bad_start_names_the_start_option(tmp_path, monkeypatch, capsys) -> None:
    with pytest.raises(SystemExit) as stopped:
        run_main(monkeypatch, *QUICK, "--start", str(tmp_path / "missing.json"))
    assert stopped.value.code == 2
    error = capsys.readouterr().err
    assert "argument --start" in error or "--start: " in error, error
    assert "missing.json' is neither a preset" in error and "--crf-params" not in error


def test_an_empty_held_out_part_is_refused(tmp_path, monkeypatch, capsys) -> None:
    out = tmp_path / "crf.json"
    with pytest.raises(SystemExit) as stopped:  # 4 images, a held-out fraction of almost 0
        run_main(monkeypatch, *QUICK, "--holdout", "1e-17", "--out", str(out))
    assert stopped.value.code == 2
    assert "leaves no held-out image" in capsys.readouterr().err
    assert not out.exists()
    tune, held_out = tune_crf.split_items(tune_crf.synthetic_items(2, seed=0), 0.5)
    assert len(tune) == len(held_out) == 1


def test_a_missing_data_directory_is_refused_before_any_folder(tmp_path, monkeypatch, capsys):
    cache = tmp_path / "cache"
    with pytest.raises(SystemExit) as stopped:
        run_main(monkeypatch, "--data", str(tmp_path / "missing"), "--cache", str(cache))
    assert stopped.value.code == 2
    assert "missing" in capsys.readouterr().err
    assert not cache.exists()


def test_absurd_learned_parameters_are_never_written(tmp_path, monkeypatch, capsys) -> None:
    items = tune_crf.synthetic_items(2, seed=0)
    bad = CRFParams(iterations=5, bi_w=0.05, bi_xy_std=8, bi_rgb_std=12, pos_w=0.05, pos_xy_std=1)
    with pytest.raises(ValueError, match="diverged"):  # a step of 1e9 in the weights
        tune_crf.gradient_search(items, bad, steps=1, lr=1e9, device="cpu")
    with pytest.raises(ValueError, match="diverged"):
        tune_crf.check_learned(CRFParams(bi_w=1e9))
    with pytest.raises(ValueError, match="compatibility"):
        tune_crf.check_learned(CRFParams(compatibility=[[-1.0, 5e3], [5e3, -1.0]]))
    assert tune_crf.check_learned(bad) == bad
    # the command line: a diverging search exits non-zero and writes nothing
    start = bad.save(tmp_path / "bad.json")
    out = tmp_path / "crf.json"
    real = tune_crf.gradient_search
    monkeypatch.setattr(
        tune_crf, "gradient_search", lambda tune, base, steps, lr, *rest: real(tune, base, 1, 1e9)
    )
    with pytest.raises(SystemExit) as stopped:
        run_main(monkeypatch, *QUICK, "--start", str(start), "--out", str(out))
    assert "diverged" in str(stopped.value.code)
    assert not out.exists()
