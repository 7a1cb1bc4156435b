"""`deeplabv2 predict` / `eval` under bad inputs: each image fails alone, nothing half-written."""

from __future__ import annotations

import errno
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from skimage import data as skdata

import deeplabv2.cli.options
import deeplabv2.conversion
import deeplabv2.models
from deeplabv2 import _files
from deeplabv2.cli import main
from deeplabv2.cli.main import build_parser
from deeplabv2.data.classes import voc_palette

from ..voc_fixture import write_voc


def photo(path: Path, rows: slice = slice(0, 65), cols: slice = slice(0, 81)) -> Path:
    Image.fromarray(np.ascontiguousarray(skdata.coffee()[rows, cols])).save(path)
    return path


def predict(tmp_path: Path, weights: Path, *extra: str) -> int:
    argv = ["predict", str(tmp_path / "in"), "--out", str(tmp_path / "out")]
    return main([*argv, "--weights", str(weights), "--quiet", *extra])


def test_bad_images_are_skipped_and_the_rest_written(tmp_path, voc_safetensors, capsys):
    folder = tmp_path / "in"
    folder.mkdir()
    photo(folder / "a_good.png")
    Image.new("RGB", (1, 1)).save(folder / "b_tiny.png")
    Image.new("1", (6000, 6000)).save(folder / "c_large.png")  # 36 MP, over the default limit
    Image.new("1", (15000, 15000)).save(folder / "d_bomb.png")  # over Pillow's bomb limit
    photo(folder / "e_good.png", slice(100, 165))
    code = predict(tmp_path, voc_safetensors, "--msc", "--pad-to", "none")
    err = capsys.readouterr().err
    assert code == 1
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["a_good.png", "e_good.png"]
    assert "b_tiny.png: image of 1x1 pixels is too small" in err
    assert "needs at least 15 pixels per side" in err  # with the 0.5 and 0.75 scales
    assert "c_large.png: the image of 6000x6000 pixels (36.0 megapixels) is over the limit" in err
    assert "d_bomb.png" in err and "--max-pixels" in err
    assert "Traceback" not in err
    # padded as the release pads (to 513), even a 1x1 image can be segmented
    for name in ("a_good.png", "c_large.png", "d_bomb.png", "e_good.png"):
        (folder / name).unlink()
    assert predict(tmp_path, voc_safetensors, "--force") == 0
    with Image.open(tmp_path / "out" / "b_tiny.png") as png:
        assert png.size == (1, 1)


def test_max_pixels_can_be_raised(tmp_path, voc_safetensors, capsys):
    (tmp_path / "in").mkdir()
    photo(tmp_path / "in" / "p.png")
    assert predict(tmp_path, voc_safetensors, "--max-pixels", "5000") == 1
    assert "over the limit of 0.0 megapixels" in capsys.readouterr().err
    assert predict(tmp_path, voc_safetensors, "--max-pixels", "6000") == 0


def test_options_are_checked_before_the_model_loads(tmp_path, monkeypatch, capsys):
    def no_loading(*args, **kwargs):
        raise AssertionError("the model was loaded before the options were checked")

    monkeypatch.setattr(deeplabv2.models, "deeplab_v2_resnet101", no_loading)
    (tmp_path / "in").mkdir()
    photo(tmp_path / "in" / "p.png")
    for options, message in (
        (["--tile-size", "600", "--tile-overlap", "400"], "--tile-overlap must be in"),
        (["--tile-size", "20"], "--tile-size 20 is too small for multi-scale testing"),
        (["--device", "cuda:0"] if not torch_cuda() else ["--device", "nonsense"], "--device"),
    ):
        assert predict(tmp_path, Path("unused.safetensors"), *options) == 1
        err = capsys.readouterr().err
        assert message in err and err.count("\n") == 1, err
    for options, message in (  # out of range: usage errors, before anything runs
        (["--tile-size", "10"], "argument --tile-size: must be >= 17, got 10"),
        (["--max-pixels", "0"], "argument --max-pixels: must be >= 1, got 0"),
        (["--crf-workers", "-1"], "argument --crf-workers: must be >= 0, got -1"),
        (["--writers", "-2"], "argument --writers: must be >= 0, got -2"),
        (["--batch-size", "x"], "argument --batch-size: 'x' is not an integer"),
    ):
        with pytest.raises(SystemExit) as usage:
            predict(tmp_path, Path("unused.safetensors"), *options)
        assert usage.value.code == 2
        err = capsys.readouterr().err
        assert message in err and err.count("\n") == 1, err


def torch_cuda() -> bool:
    import torch

    return torch.cuda.is_available()


def test_small_tiles_work_with_a_derived_overlap(tmp_path, voc_safetensors, capsys):
    (tmp_path / "in").mkdir()
    photo(tmp_path / "in" / "p.png", slice(0, 150), slice(0, 131))
    argv = ["predict", str(tmp_path / "in"), "--out", str(tmp_path / "out")]
    options = ["--tile-size", "100", "--pad-to", "none"]  # tiles at their own size
    assert main([*argv, "--weights", str(voc_safetensors), *options]) == 0
    err = capsys.readouterr().err
    assert "tiles of 131x150" in err  # the tile progress bar
    with Image.open(tmp_path / "out" / "p.png") as png:
        assert png.size == (131, 150)


def test_every_output_is_checked_before_any_is_written(tmp_path, voc_safetensors, capsys):
    (tmp_path / "in").mkdir()
    photo(tmp_path / "in" / "x.png")
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "x_overlay.jpg").write_bytes(b"mine")
    assert predict(tmp_path, voc_safetensors, "--overlay") == 1
    assert "x_overlay.jpg exists" in capsys.readouterr().err
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["x_overlay.jpg"]
    assert (tmp_path / "out" / "x_overlay.jpg").read_bytes() == b"mine"


def test_eval_on_an_empty_split_is_an_error(tmp_path, voc_safetensors, capsys):
    root = write_voc(tmp_path / "voc")
    (root / "ImageSets" / "Segmentation" / "empty.txt").write_text("\n")
    argv = ["eval", "--data", str(root), "--split", "empty", "--weights", str(voc_safetensors)]
    assert main([*argv, "--out", str(tmp_path / "r.json")]) == 1
    assert "lists no images" in capsys.readouterr().err
    assert not (tmp_path / "r.json").exists()


def relabel(root: Path, value: int, pixels: int) -> None:
    """Put ``value`` into the first ``pixels`` pixels of the first label image."""
    path = sorted((root / "SegmentationClass").iterdir())[0]
    with Image.open(path) as image:
        labels = np.array(image)
    labels.reshape(-1)[:pixels] = value
    out = Image.fromarray(labels, mode="P")
    out.putpalette(voc_palette().reshape(-1).tolist())
    out.save(path)


def test_out_of_range_labels_warn_once_or_fail_when_strict(tmp_path, voc_safetensors, capsys):
    root = write_voc(tmp_path / "voc")
    relabel(root, 37, 10)
    out = tmp_path / "r.json"
    argv = ["eval", "--data", str(root), "--weights", str(voc_safetensors), "--quiet"]
    argv += ["--limit", "1"]  # the first image holds the bad labels
    with pytest.warns(UserWarning) as warned:
        assert main([*argv, "--out", str(out)]) == 0
    messages = [str(w.message) for w in warned if "label pixels" in str(w.message)]
    assert len(messages) == 1
    assert "10 label pixels hold values outside 0..20 and 255 (ignore) (values: 37)" in messages[0]
    results = json.loads(out.read_text(), parse_constant=lambda c: pytest.fail(f"JSON has {c}"))
    assert results["invalid_label_pixels"] == {"37": 10}
    capsys.readouterr()
    assert main([*argv, "--strict-labels"]) == 1
    err = capsys.readouterr().err
    assert "2007_000001: 10 label pixels" in err


def test_out_of_memory_skips_one_image(tmp_path, voc_safetensors, monkeypatch, capsys):
    import torch

    from deeplabv2.segmenter import Segmenter

    folder = tmp_path / "in"
    folder.mkdir()
    photo(folder / "a.png")
    photo(folder / "b.png", slice(1, 66))
    original = Segmenter.probabilities_batch
    calls = []

    def run_out_on_the_second(self, images, batch_size=1, **options):
        calls.append(len(images))
        if len(calls) == 2:  # b.png, the second in sorted order
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 GiB")
        return original(self, images, batch_size, **options)

    monkeypatch.setattr(Segmenter, "probabilities_batch", run_out_on_the_second)
    assert predict(tmp_path, voc_safetensors) == 1
    err = capsys.readouterr().err
    assert "b.png: out of memory; try a smaller --tile-size" in err
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["a.png"]


# Destinations are checked before any model is loaded; every message names the user's path.


@pytest.fixture
def no_loading(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("a model was loaded before the destination was checked")

    monkeypatch.setattr(deeplabv2.models, "load_model", refuse)


def one_line(capsys) -> str:
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "loaded before" not in err, err
    return err


def test_predict_refuses_an_unwritable_out_before_loading(tmp_path, no_loading, capsys):
    (tmp_path / "in").mkdir()
    photo(tmp_path / "in" / "p.png")
    (tmp_path / "file.txt").write_text("mine")
    out = tmp_path / "file.txt" / "seg"
    argv = ["predict", str(tmp_path / "in"), "--out", str(out), "--weights", "unused"]
    assert main(argv) == 1
    err = one_line(capsys)
    assert str(out) in err and "file.txt is a file" in err


def test_predict_names_its_out_folder_when_permission_is_denied(
    tmp_path, no_loading, monkeypatch, capsys
):
    """What a user without write permission on --out gets (simulated: tests run as root)."""

    def denied(*args, dir=None, prefix="", suffix="", **kwargs):
        raise PermissionError(errno.EACCES, "Permission denied", f"{dir}/{prefix}x{suffix}")

    (tmp_path / "in").mkdir()
    photo(tmp_path / "in" / "p.png")
    monkeypatch.setattr(_files.tempfile, "mkstemp", denied)
    assert predict(tmp_path, Path("unused.safetensors"), "--overlay") == 1
    err = one_line(capsys)
    assert str(tmp_path / "out") in err and "permission denied" in err
    assert _files.TMP_SUFFIX not in err


def test_predict_probes_its_out_folder_once(tmp_path, monkeypatch):
    """One probe for the folder, not one per output file (a run may write 30,000 files)."""
    from deeplabv2.cli import predict as predict_verb

    (tmp_path / "in").mkdir()
    for name in "abc":
        photo(tmp_path / "in" / f"{name}.png")
    probes = []
    original = _files.tempfile.mkstemp
    monkeypatch.setattr(
        _files.tempfile, "mkstemp", lambda *a, **k: probes.append(k) or original(*a, **k)
    )
    argv = ["predict", str(tmp_path / "in"), "--out", str(tmp_path / "out"), "--overlay"]
    predict_verb._plan(build_parser().parse_args([*argv, "--probs"]))
    assert len(probes) == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in"]  # nothing created


def test_eval_refuses_an_unwritable_out_before_loading(tmp_path, no_loading, capsys):
    (tmp_path / "file.txt").write_text("mine")
    out = tmp_path / "file.txt" / "r.json"
    argv = ["eval", "--data", str(tmp_path / "voc"), "--weights", "unused", "--out", str(out)]
    assert main(argv) == 1
    err = one_line(capsys)
    assert str(out) in err and "file.txt is a file" in err


def test_convert_refuses_an_unwritable_destination_before_reading(tmp_path, monkeypatch, capsys):
    def refuse(*args, **kwargs):
        raise AssertionError("the source was read before the destination was checked")

    monkeypatch.setattr(deeplabv2.conversion, "read_checkpoint", refuse)
    (tmp_path / "file.txt").write_text("mine")
    dst = tmp_path / "file.txt" / "w.safetensors"
    assert main(["convert", str(tmp_path / "src.caffemodel"), str(dst)]) == 1
    err = capsys.readouterr().err
    assert str(dst) in err and "file.txt is a file" in err and "read before" not in err


def test_tile_sizes_far_below_the_padding_warn(tmp_path, monkeypatch, capsys):
    import torch

    from deeplabv2.cli.options import build_segmenter

    class Net(torch.nn.Module):
        num_classes = 3

        def forward(self, x):
            return x[:, :3, ::8, ::8]

    monkeypatch.setattr(deeplabv2.models, "load_model", lambda *a, **k: Net())
    argv = ["predict", "x.png", "--out", str(tmp_path), "--pad-to", "513"]
    build_segmenter(build_parser().parse_args([*argv, "--tile-size", "100"]), torch.device("cpu"))
    err = capsys.readouterr().err
    assert "--tile-size 100" in err and "times" in err and "tile_size=" not in err
    build_segmenter(build_parser().parse_args(argv), torch.device("cpu"))
    assert capsys.readouterr().err == ""


def test_msc_minimum_of_the_tiles_is_checked_without_the_model():
    from deeplabv2.cli.options import check

    argv = ["predict", "x.png", "--out", "o", "--tile-size", "23"]
    with pytest.raises(ValueError, match=r"--tile-size 23 .* at least 24, or --single-scale"):
        check(build_parser().parse_args(argv))
    check(build_parser().parse_args([*argv, "--msc-mode", "caffe"]))  # 0.5 of 15 is 8
    check(build_parser().parse_args([*argv, "--single-scale"]))
    check(build_parser().parse_args([*argv[:-1], "17", "--single-scale"]))


def test_a_full_size_buffer_out_of_memory_is_not_blamed_on_the_tiles(tmp_path, monkeypatch, capsys):
    import torch

    from deeplabv2 import tiling

    class Net(torch.nn.Module):
        num_classes = 3

        def forward(self, x):
            return x[:, :3, ::8, ::8]

    def refuse(*args, **kwargs):
        raise RuntimeError("DefaultCPUAllocator: can't allocate memory: you tried to allocate 8")

    monkeypatch.setattr(deeplabv2.models, "load_model", lambda *a, **k: Net())
    monkeypatch.setattr(tiling, "_full_size_buffer", refuse)
    (tmp_path / "in").mkdir()
    photo(tmp_path / "in" / "big.png", slice(0, 150), slice(0, 131))
    photo(tmp_path / "in" / "small.png")
    options = ["--tile-size", "100", "--pad-to", "none", "--single-scale"]
    assert predict(tmp_path, Path("unused.safetensors"), *options) == 1
    err = capsys.readouterr().err
    assert "big.png: the image of 131x150 pixels does not fit in memory" in err
    assert "full-size probabilities" in err and "smaller tile size does not help" in err
    assert "try a smaller --tile-size" not in err
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["small.png"]
