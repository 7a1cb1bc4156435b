"""Hostile-but-fair weights files: each gives a clear, specific error, never a wrong model."""

from __future__ import annotations

import os
import shutil
import tempfile
import time
import tracemalloc
from pathlib import Path
from typing import Optional

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file

from deeplabv2 import convert
from deeplabv2.cli import main
from deeplabv2.errors import CaffeFormatError, WeightsFormatError, WeightsMismatchError
from deeplabv2.models import deeplab_v2_resnet101
from deeplabv2.weights.caffe import parse_net, read_caffemodel

from . import caffe_writer as cw
from .caffe_files import write_caffemodel
from .loading import load


@pytest.fixture(scope="module")
def voc_state(voc_safetensors) -> dict[str, torch.Tensor]:
    return load_file(voc_safetensors)


def test_a_file_without_its_head_is_refused(tmp_path, voc_state, capsys):
    headless = {k: v for k, v in voc_state.items() if not k.startswith("aspp.")}
    path = tmp_path / "headless.safetensors"
    save_file(headless, path)
    with pytest.raises(WeightsMismatchError, match=r"no head \(missing: aspp\.convs\.0"):
        deeplab_v2_resnet101(pretrained=path)
    assert main(["convert", str(path), str(tmp_path / "out.safetensors")]) == 1
    assert "--backbone-only" in capsys.readouterr().err
    assert not (tmp_path / "out.safetensors").exists()
    # ... the same file as a .pth
    torch.save(headless, tmp_path / "headless.pth")
    with pytest.raises(WeightsMismatchError, match="no head"):
        deeplab_v2_resnet101(pretrained=tmp_path / "headless.pth")


def test_a_partial_head_is_refused_and_names_what_is_missing(tmp_path, voc_state):
    partial = {k: v for k, v in voc_state.items() if k != "aspp.convs.2.bias"}
    save_file(partial, tmp_path / "partial.safetensors")
    with pytest.raises(WeightsMismatchError, match=r"missing: aspp\.convs\.2\.bias"):
        deeplab_v2_resnet101(pretrained=tmp_path / "partial.safetensors")
    # not even when a new head is asked for: the file itself is broken
    with pytest.raises(WeightsMismatchError, match=r"missing: aspp\.convs\.2\.bias"):
        deeplab_v2_resnet101(pretrained=tmp_path / "partial.safetensors", num_classes=5)


def test_a_mismatch_names_the_file_loaded_not_the_one_it_came_from(tmp_path, voc_safetensors):
    """A converted file's header names its origin (train_iter_20000.caffemodel); an error about
    a damaged copy must name the copy."""
    from safetensors import safe_open

    with safe_open(voc_safetensors, framework="pt") as handle:
        metadata = handle.metadata()
        state = {k: handle.get_tensor(k) for k in handle.keys() if k != "aspp.convs.1.weight"}
    assert metadata["source"] == "train_iter_20000.caffemodel"
    damaged = tmp_path / "my-copy.safetensors"
    save_file(state, damaged, metadata=metadata)
    with pytest.raises(WeightsMismatchError, match=r"my-copy\.safetensors does not match") as error:
        deeplab_v2_resnet101(pretrained=damaged)
    assert "train_iter_20000" not in str(error.value)


def test_explicit_backbone_only_files_load(tmp_path, voc_state, capsys):
    headless = {k: v for k, v in voc_state.items() if not k.startswith("aspp.")}
    save_file(headless, tmp_path / "headless.safetensors")
    # asking for a new head makes the missing one explicit
    model = deeplab_v2_resnet101(pretrained=tmp_path / "headless.safetensors", num_classes=4)
    assert model.num_classes == 4
    assert torch.equal(model.backbone.conv1.weight, voc_state["backbone.conv1.weight"])
    # a converted backbone-only file says so in its metadata and loads without flags
    out = tmp_path / "backbone.safetensors"
    assert (
        main(["convert", str(tmp_path / "headless.safetensors"), str(out), "--backbone-only"]) == 0
    )
    assert "backbone only" in capsys.readouterr().out
    _, info = load(out)
    assert info.num_classes is None
    with pytest.warns(UserWarning, match="no head"):
        assert deeplab_v2_resnet101(pretrained=out).num_classes == 21


def blob_layer(name: str, layer_type: str, blobs: list[bytes]) -> bytes:
    payload = cw.length_delimited(1, name.encode()) + cw.length_delimited(2, layer_type.encode())
    return cw.length_delimited(100, payload + b"".join(cw.length_delimited(7, b) for b in blobs))


def shaped_blob(dims: tuple[int, ...], values: np.ndarray) -> bytes:
    shape = cw.length_delimited(1, b"".join(cw.varint(d) for d in dims))
    return cw.length_delimited(7, shape) + cw.length_delimited(5, values.astype("<f4").tobytes())


def test_corrupt_caffe_blobs_name_the_file_and_the_layer(tmp_path, release_layers):
    layers = dict(release_layers)
    mean, var, _ = layers["bn2a_branch2b"][1]
    layers["bn2a_branch2b"] = ("BatchNorm", [mean, var, np.zeros(0, np.float32)])
    path = write_caffemodel(tmp_path / "emptyblob.caffemodel", layers, blobless=False)
    with pytest.raises(CaffeFormatError, match=r"emptyblob\.caffemodel.*bn2a_branch2b"):
        load(path)

    huge = blob_layer("conv1", "Convolution", [shaped_blob((2**32, 2**32), np.zeros(0))])
    (tmp_path / "huge.caffemodel").write_bytes(cw.net("x", [huge]))
    with pytest.raises(CaffeFormatError, match=r"huge\.caffemodel.*layer conv1.*does not match"):
        read_caffemodel(tmp_path / "huge.caffemodel")

    five = blob_layer("res2a_branch2a", "Convolution", [shaped_blob((1, 1, 1, 1, 2), np.zeros(2))])
    (tmp_path / "five.caffemodel").write_bytes(cw.net("x", [five]))
    with pytest.raises(CaffeFormatError, match=r"five\.caffemodel.*res2a_branch2a.*4 axes"):
        read_caffemodel(tmp_path / "five.caffemodel")


@pytest.mark.parametrize(
    ("content", "named"),
    [({3: torch.zeros(1)}, "key 3 is a int"), ({"a": 1.5}, "'a' holds a float"),
     ({"b": [1, 2]}, "'b' holds a list")],
)  # fmt: skip
def test_pth_that_is_not_a_state_dict(tmp_path, content, named):
    torch.save(content, tmp_path / "odd.pth")
    with pytest.raises(WeightsFormatError, match=f"odd.pth: not a state dict: {named}"):
        load(tmp_path / "odd.pth")


def test_convert_refuses_bad_destinations_before_reading(tmp_path, release_caffemodel, capsys):
    assert main(["convert", str(release_caffemodel), str(tmp_path / "out.pth")]) == 1
    assert "must be a .safetensors file" in capsys.readouterr().err
    assert not (tmp_path / "out.pth").exists()
    (tmp_path / "dir.safetensors").mkdir()
    assert main(["convert", str(release_caffemodel), str(tmp_path / "dir.safetensors")]) == 1
    err = capsys.readouterr().err
    assert "is a directory" in err and "--force" not in err
    dst = str(tmp_path / "dir.safetensors")
    assert main(["convert", str(release_caffemodel), dst, "--force"]) == 1
    assert "is a directory" in capsys.readouterr().err


def load_in_child(path, uid: Optional[int]) -> str:
    """Load weights in a forked child (as ``uid`` if given); returns what it reports."""
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: report the error, never return into pytest
        os.close(read)
        try:
            if uid is not None:
                os.setgid(uid)
                os.setuid(uid)
            deeplab_v2_resnet101(pretrained=path)
            message = "loaded"
        except BaseException as error:  # noqa: BLE001
            message = f"{type(error).__name__}: {error}"
        os.write(write, message.encode())
        os._exit(0)
    os.close(write)
    with os.fdopen(read) as pipe:
        message = pipe.read()
    os.waitpid(pid, 0)
    return message


def test_unreadable_file_says_permission_denied(voc_safetensors):
    folder = Path(tempfile.mkdtemp())  # directly in /tmp: other users can reach it
    locked = folder / "locked.safetensors"
    locked.write_bytes(voc_safetensors.read_bytes()[:4096])
    locked.chmod(0o000)
    folder.chmod(0o755)
    # root may read anything: an unprivileged user makes the attempt
    try:
        message = load_in_child(locked, 65534 if os.geteuid() == 0 else None)
        assert locked.exists()
    finally:
        shutil.rmtree(folder)
    assert message.startswith("PermissionError:"), message
    assert "permission denied" in message and str(locked) in message
    assert "delete" not in message and "corrupt" not in message


def unpacked_caffemodel(path, floats: int) -> int:
    """A net with one 1-D blob of ``floats`` values, each stored as its own protobuf field."""
    records = np.empty((floats, 5), np.uint8)
    records[:, 0] = 5 << 3 | 5  # field 5 (data), wire type 5 (fixed32)
    records[:, 1:] = np.arange(floats, dtype="<f4").view(np.uint8).reshape(floats, 4)
    blob = records.tobytes()
    layer = blob_layer("conv1", "Convolution", [blob])
    path.write_bytes(cw.net("unpacked", [layer]))
    return path.stat().st_size


def test_unpacked_floats_stay_within_a_small_multiple_of_the_file(tmp_path):
    size = unpacked_caffemodel(tmp_path / "unpacked.caffemodel", 4_000_000)  # 20 MB
    tracemalloc.start()
    start = time.perf_counter()
    _, layers = read_caffemodel(tmp_path / "unpacked.caffemodel")
    elapsed = time.perf_counter() - start
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    np.testing.assert_array_equal(layers[0].blobs[0], np.arange(4_000_000, dtype=np.float32))
    assert peak < 4 * size, f"peak {peak / 1e6:.0f} MB for a {size / 1e6:.0f} MB file"
    assert elapsed < 5.0


def test_unpacked_floats_between_one_byte_fields_parse_in_linear_time(tmp_path):
    """Each float its own field, each followed by a 2-byte legacy ``num`` field: every run of
    floats is one value long. Parsing once scanned the rest of the blob for every run
    (quadratic: 39 s for this 1.1 MB file); now it takes well under a second."""
    floats = 160_000
    records = np.empty((floats, 7), np.uint8)
    records[:, 0] = 5 << 3 | 5  # field 5 (data), wire type 5 (fixed32)
    records[:, 1:5] = np.arange(floats, dtype="<f4").view(np.uint8).reshape(floats, 4)
    records[:, 5:] = (1 << 3 | 0, 1)  # field 1 (legacy num), varint 1
    shape = cw.length_delimited(7, cw.length_delimited(1, cw.varint(floats)))
    layer = blob_layer("conv1", "Convolution", [records.tobytes() + shape])
    path = tmp_path / "interleaved.caffemodel"
    path.write_bytes(cw.net("interleaved", [layer]))
    assert path.stat().st_size > 1_000_000
    start = time.perf_counter()
    _, layers = read_caffemodel(path)
    elapsed = time.perf_counter() - start
    np.testing.assert_array_equal(layers[0].blobs[0], np.arange(floats, dtype=np.float32))
    assert layers[0].blobs[0].flags.writeable  # torch.from_numpy takes it without a warning
    assert elapsed < 2.0, f"took {elapsed:.1f} s"


def test_absurd_layer_counts_are_refused_early(tmp_path):
    empty = cw.length_delimited(100, b"")
    data = cw.net("many", [empty] * 4_000_000)
    start = time.perf_counter()
    with pytest.raises(CaffeFormatError, match="more than 20000 layers"):
        parse_net(data)
    assert time.perf_counter() - start < 2.0


def test_a_failed_write_leaves_nothing_behind(tmp_path, release_caffemodel, monkeypatch):
    import safetensors.torch

    from deeplabv2.weights import state_dicts

    def write_half_then_fail(tensors, filename, metadata=None):
        with open(filename, "wb") as handle:
            handle.write(b"\0" * 1000)
        raise KeyboardInterrupt  # as if Ctrl-C arrived mid-write

    monkeypatch.setattr(state_dicts, "save_file", write_half_then_fail)
    with pytest.raises(KeyboardInterrupt):
        convert(release_caffemodel, tmp_path / "out.safetensors")
    assert os.listdir(tmp_path) == []
    monkeypatch.setattr(state_dicts, "save_file", safetensors.torch.save_file)
    dst = tmp_path / "out.safetensors"
    dst.write_bytes(b"old")
    with pytest.raises(KeyboardInterrupt):
        monkeypatch.setattr(state_dicts, "save_file", write_half_then_fail)
        convert(release_caffemodel, dst, force=True)
    assert dst.read_bytes() == b"old" and os.listdir(tmp_path) == ["out.safetensors"]
