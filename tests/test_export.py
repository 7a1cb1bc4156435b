"""ONNX export: parity in onnxruntime at several sizes, metadata, the CLI, clear failures."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from deeplabv2 import MultiScale
from deeplabv2.cli import main
from deeplabv2.errors import OutputExistsError
from deeplabv2.interp import upsample_logits
from deeplabv2.models import DeepLabV2, deeplab_largefov_vgg16, save_weights
from deeplabv2.protocol import PretrainedInfo

from .conftest import randomize_batchnorm

onnx = pytest.importorskip("onnx", reason="needs the export extra")
ort = pytest.importorskip("onnxruntime", reason="needs the export extra")
export = pytest.importorskip("deeplabv2.export")


@pytest.fixture(scope="module")
def named_model(tiny_deeplab_module):
    model = tiny_deeplab_module
    model.class_names = ("background", "cat", "dog", "sky", "tree")
    model.pretrained_info = PretrainedInfo(source="test")
    return model


@pytest.fixture(scope="module")
def tiny_deeplab_module():
    torch.manual_seed(1)
    return randomize_batchnorm(DeepLabV2(num_classes=5, blocks=(1, 1, 1, 1)), seed=1).eval()


def run(path: Path, x: torch.Tensor) -> np.ndarray:
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return session.run(None, {"image": x.numpy()})[0]


def relative_error(got: np.ndarray, expected: torch.Tensor) -> float:
    expected = expected.detach().numpy()
    return float(np.abs(got - expected).max() / np.abs(expected).max())


def test_logits_match_pytorch_at_any_size(named_model, tmp_path: Path) -> None:
    report = export.export_onnx(named_model, tmp_path / "m.onnx", msc=False)
    assert report.path == tmp_path / "m.onnx" and report.path.is_file()
    assert [shape for shape, _ in report.errors] == list(export.VERIFY_SHAPES)
    assert report.max_relative_error <= 1e-4
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.onnx"]  # no temporaries left
    # sizes and a batch the export never saw: the graph is dynamic
    for shape in [(1, 3, 65, 65), (3, 3, 200, 131)]:
        x = torch.randn(shape) * 50
        got = run(report.path, x)
        expected = named_model(x)
        assert got.shape == tuple(expected.shape)
        assert relative_error(got, expected) <= 1e-4


def test_metadata_describes_input_and_classes(named_model, tmp_path: Path) -> None:
    path = export.export_onnx(named_model, tmp_path / "m.onnx", msc=False, verify=False).path
    props = {p.key: p.value for p in onnx.load(str(path)).metadata_props}
    assert json.loads(props["deeplabv2.class_names"]) == list(named_model.class_names)
    pre = json.loads(props["deeplabv2.preprocessing"])
    assert pre["channels"] == "BGR" and pre["subtract_mean_bgr"] == pytest.approx(
        [104.008, 116.669, 122.675]
    )
    assert props["deeplabv2.num_classes"] == "5"
    assert json.loads(props["deeplabv2.msc_scales"]) == []
    assert "stride 8" in props["deeplabv2.output"]
    # folded: no BatchNormalization left in the graph
    graph = onnx.load(str(path)).graph
    assert not any(node.op_type == "BatchNormalization" for node in graph.node)


def test_msc_probabilities_at_input_size(named_model, tmp_path: Path) -> None:
    report = export.export_onnx(named_model, tmp_path / "p.onnx", msc=True, probabilities=True)
    assert report.max_relative_error <= 1e-4
    props = {p.key: p.value for p in onnx.load(str(report.path)).metadata_props}
    assert json.loads(props["deeplabv2.msc_scales"]) == [0.5, 0.75]
    x = torch.randn(2, 3, 100, 90) * 50
    got = run(report.path, x)
    assert got.shape == (2, 5, 100, 90)
    np.testing.assert_allclose(got.sum(1), 1.0, atol=1e-5)
    msc = MultiScale(named_model, (0.5, 0.75)).eval()
    expected = torch.softmax(upsample_logits(msc(x), (100, 90)), dim=1)
    np.testing.assert_allclose(got, expected.detach().numpy(), atol=1e-5)


def test_a_failed_check_writes_nothing(named_model, tmp_path: Path) -> None:
    with pytest.raises(export.ExportVerificationError, match="the file was not written"):
        export.export_onnx(named_model, tmp_path / "m.onnx", tolerance=0.0)
    assert list(tmp_path.iterdir()) == []


def test_destination_rules(named_model, tmp_path: Path) -> None:
    (tmp_path / "m.onnx").write_bytes(b"mine")
    with pytest.raises(OutputExistsError, match="pass --force"):
        export.export_onnx(named_model, tmp_path / "m.onnx", verify=False)
    assert (tmp_path / "m.onnx").read_bytes() == b"mine"
    with pytest.raises(ValueError, match=r"must be a \.onnx file"):
        export.export_onnx(named_model, tmp_path / "m.pb", verify=False)


def test_cli_exports_a_weights_file(tmp_path: Path, capsys) -> None:
    model = deeplab_largefov_vgg16(num_classes=3)
    model.class_names = ("a", "b", "c")
    weights = save_weights(model, tmp_path / "w.safetensors")
    argv = ["export", "--weights", str(weights), str(tmp_path / "w.onnx"), "--opset", "19"]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "wrote" in out and "max relative error" in out and "3 classes" in out
    assert "ONNX opset 19" in out
    assert opset_of(tmp_path / "w.onnx") == 19
    props = {p.key: p.value for p in onnx.load(str(tmp_path / "w.onnx")).metadata_props}
    assert props["deeplabv2.architecture"] == "deeplab_largefov_vgg16"
    assert json.loads(props["deeplabv2.class_names"]) == ["a", "b", "c"]
    # a second run refuses to overwrite, in one line
    assert main(["export", "--weights", str(weights), str(tmp_path / "w.onnx")]) == 1
    assert "exists; pass --force" in capsys.readouterr().err


def test_missing_extra_names_it() -> None:
    code = (
        "import sys; sys.modules['onnxscript'] = None\n"
        "from deeplabv2.cli import main\n"
        "sys.exit(main(['export', '--weights', 'x.safetensors', 'out.onnx']))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 1
    assert "pip install 'deeplabv2[export]'" in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1


def opset_of(path: Path) -> int:
    model = onnx.load(str(path))
    return next(op.version for op in model.opset_import if op.domain in ("", "ai.onnx"))


@pytest.fixture
def no_loading(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("the weights were loaded before the options were checked")

    monkeypatch.setattr("deeplabv2.models.load_model", refuse)  # the verb imports it when run


def test_the_supported_opsets_are_the_exporters(tmp_path) -> None:
    """torch's dynamo exporter writes opset 18 (torchlib's) and converts it up to the newest
    opset onnx knows; anything older came back as opset 18 without a word, and so did 99."""
    opsets = export.supported_opsets()
    assert opsets[0] == 18 and 20 in opsets and opsets[-1] == onnx.defs.onnx_opset_version()
    assert 17 not in opsets and 99 not in opsets


@pytest.mark.parametrize("opset", [1, 7, 11, 0, -5, 17, 99])
def test_unsupported_opsets_are_refused_before_loading(opset, tmp_path, no_loading, capsys):
    out = tmp_path / "m.onnx"
    assert main(["export", "--weights", "unused", str(out), "--opset", str(opset)]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "loaded before" not in err, err
    first, last = export.supported_opsets()[0], export.supported_opsets()[-1]
    assert f"--opset {opset} " in err and f"{first} to {last}" in err, err
    assert not out.exists()
    with pytest.raises(ValueError, match=f"opset={opset} "):
        export.export_onnx(torch.nn.Conv2d(3, 2, 1), out, opset=opset)


def test_the_destination_is_checked_before_loading(tmp_path, no_loading, capsys) -> None:
    (tmp_path / "m.onnx").write_bytes(b"mine")
    assert main(["export", "--weights", "unused", str(tmp_path / "m.onnx")]) == 1
    assert "exists; pass --force" in capsys.readouterr().err
    (tmp_path / "file.txt").write_text("mine")
    out = tmp_path / "file.txt" / "m.onnx"
    assert main(["export", "--weights", "unused", str(out)]) == 1
    err = capsys.readouterr().err
    assert str(out) in err and "file.txt is a file" in err
    assert main(["export", "--weights", "unused", str(tmp_path / "m.pb")]) == 1
    assert "must be a .onnx file" in capsys.readouterr().err


def test_a_file_of_another_opset_than_asked_is_not_written(
    named_model, tmp_path, monkeypatch
) -> None:
    """ONNX's own converter (the fallback beyond onnxscript's) may fail without a word: the
    opset of the file is checked, whatever the supported range says."""
    monkeypatch.setattr(export, "supported_opsets", lambda: range(7, 26))
    with pytest.raises(export.ExportVerificationError, match="opset 13, .* wrote opset 18"):
        export.export_onnx(named_model, tmp_path / "m.onnx", msc=False, opset=13, verify=False)
    assert list(tmp_path.iterdir()) == []
