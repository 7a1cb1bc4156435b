"""An independent reference of the UDA works' ``ResNetMulti``, written for the parity tests from
what their code computes (no code copied), over a state dict in THEIR key names:

* wasidennis/AdaptSegNet ``model/deeplab_multi.py`` (repository at commit
  fca9ff0f09dab45d44bf6d26091377ac66607028, file last changed in
  21d874c0e46587cb4b389a01c975a481e3aeb6cd) and ``model/deeplab.py`` (single level,
  d935207c7501ebcb080b11dd9e55775fbce51683);
* valeoai/ADVENT ``advent/model/deeplabv2.py`` (repository at
  3e58d45a32fb9763a9d1b459326e1dec7caafe78, file 7d6f78db5e90980b262243fa4a78f0092b209b97).

What they compute: a 7x7/2 convolution (padding 3, no bias), affine BatchNorm (eps 1e-5, running
statistics), ReLU, 3x3/2 max pooling with padding 1 and ``ceil_mode=True``; four stages of
bottlenecks (3, 4, 23, 3 blocks; 64, 128, 256, 512 mid channels, x4 out) whose first block
has a projection shortcut (1x1 convolution with the block's stride + BatchNorm); the stride (2,
in the second stage only) sits on the first 1x1 convolution; the 3x3 convolution has
``padding = dilation`` (1, 1, 2, 4 per stage). Each head is four 3x3 convolutions with bias,
``padding = dilation`` = 6, 12, 18, 24: AdaptSegNet's ``Classifier_Module.forward`` returns in
the first pass of its loop (branch 0 + branch 1); ADVENT's sums all four. ``layer5`` reads
``layer3``'s output (multi level) and ``layer6`` ``layer4``'s; AdaptSegNet's single-level model
has one head, ``layer5``, on ``layer4``.

The functions use ``torch.nn.functional`` directly; nothing of deeplabv2 is imported.
"""

from __future__ import annotations

from collections.abc import Iterator

import torch
import torch.nn.functional as F

BLOCKS = (3, 4, 23, 3)
STRIDES = (1, 2, 1, 1)
DILATIONS = (1, 1, 2, 4)
RATES = (6, 12, 18, 24)


def _bn_keys(prefix: str, channels: int) -> Iterator[tuple[str, tuple[int, ...]]]:
    for entry in ("weight", "bias", "running_mean", "running_var"):
        yield f"{prefix}.{entry}", (channels,)


def backbone_shapes() -> Iterator[tuple[str, tuple[int, ...]]]:
    """Every backbone entry of their state dict and its shape, in their names."""
    yield "conv1.weight", (64, 3, 7, 7)
    yield from _bn_keys("bn1", 64)
    inplanes = 64
    for stage, count in enumerate(BLOCKS):
        planes = 64 * 2**stage
        for block in range(count):
            p = f"layer{stage + 1}.{block}"
            cin = inplanes if block == 0 else planes * 4
            yield f"{p}.conv1.weight", (planes, cin, 1, 1)
            yield from _bn_keys(f"{p}.bn1", planes)
            yield f"{p}.conv2.weight", (planes, planes, 3, 3)
            yield from _bn_keys(f"{p}.bn2", planes)
            yield f"{p}.conv3.weight", (planes * 4, planes, 1, 1)
            yield from _bn_keys(f"{p}.bn3", planes * 4)
            if block == 0:
                yield f"{p}.downsample.0.weight", (planes * 4, cin, 1, 1)
                yield from _bn_keys(f"{p}.downsample.1", planes * 4)
        inplanes = planes * 4


def head_shapes(layer: str, cin: int, classes: int) -> Iterator[tuple[str, tuple[int, ...]]]:
    for branch in range(len(RATES)):
        yield f"{layer}.conv2d_list.{branch}.weight", (classes, cin, 3, 3)
        yield f"{layer}.conv2d_list.{branch}.bias", (classes,)


def random_state(heads: dict[str, int], classes: int, seed: int) -> dict[str, torch.Tensor]:
    """Random weights and BatchNorm statistics in their names; ``heads``: layer -> input
    channels (``{"layer5": 1024, "layer6": 2048}`` for a multi-level model)."""
    g = torch.Generator().manual_seed(seed)
    state = {}
    shapes = list(backbone_shapes())
    for layer, cin in heads.items():
        shapes += list(head_shapes(layer, cin, classes))
    for key, shape in shapes:
        if key.endswith("running_var"):
            value = torch.rand(shape, generator=g) + 0.5
        elif key.endswith("running_mean") or key.endswith("bias"):
            value = torch.randn(shape, generator=g) * 0.1
        elif len(shape) == 1:  # BatchNorm weight
            value = torch.rand(shape, generator=g) * 0.5 + 0.5
        else:  # a convolution: variance-preserving
            fan_in = shape[1] * shape[2] * shape[3]
            value = torch.randn(shape, generator=g) * (1.0 / fan_in) ** 0.5
        state[key] = value
    return state


def _bn(sd: dict, prefix: str, x: torch.Tensor) -> torch.Tensor:
    return F.batch_norm(
        x,
        sd[f"{prefix}.running_mean"],
        sd[f"{prefix}.running_var"],
        sd[f"{prefix}.weight"],
        sd[f"{prefix}.bias"],
        training=False,
        eps=1e-5,
    )


def _bottleneck(sd: dict, p: str, x: torch.Tensor, stride: int, dilation: int) -> torch.Tensor:
    out = F.relu(_bn(sd, f"{p}.bn1", F.conv2d(x, sd[f"{p}.conv1.weight"], stride=stride)))
    out = F.conv2d(out, sd[f"{p}.conv2.weight"], padding=dilation, dilation=dilation)
    out = F.relu(_bn(sd, f"{p}.bn2", out))
    out = _bn(sd, f"{p}.bn3", F.conv2d(out, sd[f"{p}.conv3.weight"]))
    residual = x
    if f"{p}.downsample.0.weight" in sd:
        residual = F.conv2d(x, sd[f"{p}.downsample.0.weight"], stride=stride)
        residual = _bn(sd, f"{p}.downsample.1", residual)
    return F.relu(out + residual)


def stages(sd: dict, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The outputs of ``layer3`` and ``layer4``."""
    x = F.relu(_bn(sd, "bn1", F.conv2d(x, sd["conv1.weight"], stride=2, padding=3)))
    x = F.max_pool2d(x, kernel_size=3, stride=2, padding=1, ceil_mode=True)
    outputs = []
    for stage, count in enumerate(BLOCKS):
        for block in range(count):
            stride = STRIDES[stage] if block == 0 else 1
            x = _bottleneck(sd, f"layer{stage + 1}.{block}", x, stride, DILATIONS[stage])
        outputs.append(x)
    return outputs[2], outputs[3]


def classifier(sd: dict, layer: str, x: torch.Tensor, adaptsegnet: bool) -> torch.Tensor:
    """One head; ``adaptsegnet``: its code's loop, which returns after the second branch."""

    def branch(i: int) -> torch.Tensor:
        weight, bias = sd[f"{layer}.conv2d_list.{i}.weight"], sd[f"{layer}.conv2d_list.{i}.bias"]
        return F.conv2d(x, weight, bias, padding=RATES[i], dilation=RATES[i])

    out = branch(0)
    for i in range(len(RATES) - 1):
        out = out + branch(i + 1)
        if adaptsegnet:
            return out
    return out


def forward(sd: dict, x: torch.Tensor, adaptsegnet: bool) -> tuple[torch.Tensor, ...]:
    """Their ``forward``: ``(aux, main)`` for a multi-level state dict, ``(main,)`` otherwise
    (ADVENT's single-level ``layer6``, or AdaptSegNet's single-level ``layer5`` on layer4)."""
    c4, c5 = stages(sd, x)
    if "layer5.conv2d_list.0.weight" in sd and "layer6.conv2d_list.0.weight" in sd:
        return classifier(sd, "layer5", c4, adaptsegnet), classifier(sd, "layer6", c5, adaptsegnet)
    main = "layer6" if "layer6.conv2d_list.0.weight" in sd else "layer5"
    return (classifier(sd, main, c5, adaptsegnet),)
