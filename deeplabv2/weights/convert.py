"""Caffe layer names <-> this library's module names (the one mapping table).

DeepLab v2's Caffe nets name their layers after the original ResNet release: ``conv1`` +
``bn_conv1`` + ``scale_conv1`` for the stem, ``res{stage}{block}_branch{2a,2b,2c,1}`` for the
bottlenecks (blocks ``a, b, c`` for stages of 3 blocks, ``a, b1, b2, ...`` for longer stages:
``res3b3``, ``res4b22``), with ``bn``/``scale`` in place of ``res`` for their BatchNorm and Scale
layers, and ``<head>_c0`` .. ``<head>_c3`` (e.g. ``fc1_voc12_c0``) for the ASPP branches.
"""

from __future__ import annotations

from collections.abc import Sequence

__all__ = ["caffe_block_name", "caffe_layer_table"]

#: Caffe branch suffix -> (convolution path, BatchNorm path) inside a ``Bottleneck``.
_BRANCHES = {
    "branch2a": ("conv1", "bn1"),
    "branch2b": ("conv2", "bn2"),
    "branch2c": ("conv3", "bn3"),
    "branch1": ("downsample.0", "downsample.1"),
}


def caffe_block_name(stage_index: int, block_index: int, num_blocks: int) -> str:
    """Caffe name of a bottleneck: stage 0..3 (``res2``..``res5``), block 0.. -> ``res4b22``."""
    if block_index == 0:
        suffix = "a"
    elif num_blocks <= 3:
        suffix = chr(ord("a") + block_index)
    else:
        suffix = f"b{block_index}"
    return f"res{stage_index + 2}{suffix}"


def caffe_layer_table(
    blocks: Sequence[int] = (3, 4, 23, 3), head: str = "fc1_voc12", num_branches: int = 4
) -> dict[str, tuple[str, str]]:
    """Every Caffe layer that has parameters -> ``(module path, kind)``.

    ``kind`` is ``"conv"`` (blobs: weight, optional bias), ``"bn"`` (Caffe ``BatchNorm`` blobs:
    mean*s, var*s, s) or ``"scale"`` (Caffe ``Scale`` blobs: BatchNorm weight, bias). Module
    paths are those of :class:`deeplabv2.models.DeepLabV2`, e.g. ``res4b22_branch2c`` ->
    ``("backbone.layer3.22.conv3", "conv")``, ``scale4b22_branch2c`` ->
    ``("backbone.layer3.22.bn3", "scale")``, ``fc1_voc12_c2`` -> ``("aspp.convs.2", "conv")``.
    """
    table: dict[str, tuple[str, str]] = {
        "conv1": ("backbone.conv1", "conv"),
        "bn_conv1": ("backbone.bn1", "bn"),
        "scale_conv1": ("backbone.bn1", "scale"),
    }
    for stage, count in enumerate(blocks):
        for block in range(count):
            name = caffe_block_name(stage, block, count)
            prefix = f"backbone.layer{stage + 1}.{block}"
            for branch, (conv, bn) in _BRANCHES.items():
                if branch == "branch1" and block != 0:
                    continue
                table[f"{name}_{branch}"] = (f"{prefix}.{conv}", "conv")
                bn_layer = "bn" + name[len("res") :]
                table[f"{bn_layer}_{branch}"] = (f"{prefix}.{bn}", "bn")
                table[f"scale{name[len('res') :]}_{branch}"] = (f"{prefix}.{bn}", "scale")
    for index in range(num_branches):
        table[f"{head}_c{index}"] = (f"aspp.convs.{index}", "conv")
    return table
