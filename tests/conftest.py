"""Shared fixtures: small DeepLab v2 models with non-trivial BatchNorm statistics; the ``quick``
marker (a representative subset of the suite, ``python -m pytest -m quick``)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from deeplabv2.models import DeepLabV2, FrozenBatchNorm2d

#: Test modules marked ``quick`` as a whole, by file name (so that a moved file keeps the mark):
#: every layer of the package once, the fast way, and the recipes of docs/architecture.md.
QUICK_MODULES = frozenset({
    "test_architecture.py",  # the import floors
    "test_interp.py", "test_msc.py", "test_metrics.py", "test_files.py",
    "test_transforms.py", "test_images.py", "test_samples.py",  # data
    "test_dense_crf.py",  # the CRF's front
    "test_registry.py", "test_caffe_names.py", "test_unavailable.py",  # weights
    "test_new_family.py", "test_new_variant.py", "test_new_verb.py", "test_weights_tables.py",
})  # fmt: skip
#: Single tests of heavier modules marked ``quick``, as ``<file name>::<test name>`` (the
#: parameters of a parametrized test included).
QUICK_TESTS = frozenset({
    "test_layers.py::test_every_import_goes_one_way_down",
    "test_layers.py::test_no_import_circle_between_modules",
    "test_main.py::test_convert",
    "test_main.py::test_usage_errors_exit_2",
    "test_main.py::test_errors_are_one_line_unless_verbose",
    "test_main.py::test_weights_listing",
    "test_segmenter.py::test_input_kinds_agree",  # the network end to end
    "test_segmenter.py::test_the_weights_protocol_is_followed",
    "test_deeplab.py::test_forward_shape_for_a_voc_sized_image",
    "test_deeplab.py::test_train_and_eval_outputs_are_identical",
    "test_hub.py::test_offline_with_an_empty_cache_gives_one_clear_error",
    "test_hub.py::test_release_zip_in_the_torch_hub_cache",
    "test_range_download.py::test_one_member_moves_only_its_bytes_and_a_few_kilobytes",
    "test_range_download.py::test_a_dropped_connection_is_resumed_with_a_range_request",
    "test_convert.py::test_caffemodel_converts_and_matches_the_caffe_forward",
    "test_convert.py::test_class_names_and_protocol_travel_with_the_file",
    "test_protocol_doors.py::test_the_segmenter_replaces_only_what_is_overridden",
    "test_examples.py::test_markers_are_read",
})  # fmt: skip


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark the tests of :data:`QUICK_MODULES` and :data:`QUICK_TESTS` ``quick`` (never a
    slow one: ``-m quick`` replaces the default ``-m 'not slow'``)."""
    for item in items:
        module = item.path.name
        if item.get_closest_marker("slow") is not None:
            continue
        if module in QUICK_MODULES or f"{module}::{item.originalname}" in QUICK_TESTS:
            item.add_marker(pytest.mark.quick)


def randomize_batchnorm(model: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    """Give every frozen BatchNorm random statistics and affine parameters, like trained ones."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, FrozenBatchNorm2d):
                n = module.num_features
                module.running_mean.copy_(torch.randn(n, generator=generator) * 0.1)
                module.running_var.copy_(torch.rand(n, generator=generator) * 0.5 + 0.5)
                module.weight.copy_(torch.rand(n, generator=generator) * 0.5 + 0.5)
                module.bias.copy_(torch.randn(n, generator=generator) * 0.1)
    return model


@pytest.fixture(scope="session")
def deeplab() -> DeepLabV2:
    """A ResNet-101 DeepLab v2 (21 classes) with random weights and BatchNorm, in eval mode."""
    torch.manual_seed(0)
    return randomize_batchnorm(DeepLabV2(num_classes=21)).eval()


@pytest.fixture(scope="session")
def tiny_deeplab() -> DeepLabV2:
    """A one-block-per-stage DeepLab v2 (5 classes): same layers, a fraction of the cost."""
    torch.manual_seed(1)
    return randomize_batchnorm(DeepLabV2(num_classes=5, blocks=(1, 1, 1, 1)), seed=1).eval()


# Synthetic release-style Caffe weights, written by the test suite (see tests/weights).


@pytest.fixture(scope="session")
def release_layers() -> dict:
    """Every Caffe layer of DeepLab v2 ResNet-101 (release names), random values."""
    from .weights.caffe_reference import synthetic_blobs

    return synthetic_blobs()


@pytest.fixture(scope="session")
def release_caffemodel(tmp_path_factory, release_layers) -> Path:
    """The layers as a release-style .caffemodel: mixed blob encodings, blob-less layers and
    multi-scale copies of shared layers."""
    copies = {
        "conv1_res075": "conv1",
        "bn_conv1_res05": "bn_conv1",
        "res4b22_branch2c_res075": "res4b22_branch2c",
        "fc1_voc12_c3_res05": "fc1_voc12_c3",
    }
    from .weights.caffe_files import write_caffemodel

    path = tmp_path_factory.mktemp("release") / "train_iter_20000.caffemodel"
    return write_caffemodel(path, release_layers, copies=copies)


@pytest.fixture(scope="session")
def voc_safetensors(tmp_path_factory, release_caffemodel) -> Path:
    """The synthetic release model converted to safetensors (21 classes)."""
    from deeplabv2 import convert

    path, _ = convert(release_caffemodel, tmp_path_factory.mktemp("converted") / "voc.safetensors")
    return path


@pytest.fixture
def private_tmp(tmp_path, monkeypatch) -> Path:
    """This test's temporary files go to a folder of their own, to see that none is left."""
    import tempfile

    folder = tmp_path / "tmp"
    folder.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(folder))
    return folder
