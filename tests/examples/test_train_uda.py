"""examples/train.py with the source-only GTA5 -> Cityscapes settings of AdaptSegNet
(wasidennis/AdaptSegNet ``train_gta2cityscapes_multi.py``, file commit
351fef3a972b44737757e96cae1c8cad2100128b, and ``pytorch_0.4/train_gta2cityscapes_multi.py``
e3cfac52201ff80b21e8f5366094639d4a83984b): images resized (no crop), the main and auxiliary
heads' logits upsampled to the labels, the heads at 10x, an early stop; on tiny generated GTA5
and Cityscapes folders (CPU)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image
from safetensors import safe_open
from safetensors.torch import load_file
from skimage import data as skdata

from deeplabv2 import Segmenter
from deeplabv2.data import GTA5, Cityscapes
from deeplabv2.models import DeepLabV2
from deeplabv2.models.deeplab_resnet import Levels
from deeplabv2.protocol import UDA_PROTOCOL

from ..data.test_driving import write_cityscapes
from .test_train import EXAMPLES, train

#: GTA5's labels are Cityscapes label ids: 0 unlabeled, 7 road, 11 building, 26 car
ROAD, BUILDING, CAR = 7, 11, 26
#: the tiny run: AdaptSegNet's keys on a 4-block network, [80, 48] instead of [1280, 720]
UDA = dict(
    model_args={"aux_head": True, "head_branches": 2},
    init=None,
    blocks=[1, 1, 1, 1],
    dataset="gta5",
    split="all",
    val_dataset="cityscapes",
    val_split="val",
    num_classes=19,
    class_names="cityscapes",
    lr=1e-3,
    max_iter=6,
    stop_iter=3,
    batch_size=1,
    resize=[80, 48],
    crop_size=None,
    scale_factors=[1.0],
    flip=False,
    msc=False,
    loss="upsampled",
    aux_loss_weight=0.1,
    head_lr_mult=10,
    head_bias_lr_mult=10,
    head_bias_decay=True,
    checkpoint_every=100,
    val_every=100,
)


@pytest.fixture(scope="module")
def gta5(tmp_path_factory) -> Path:
    """Three frames of different sizes (as GTA5's), labelled with Cityscapes label ids."""
    root = tmp_path_factory.mktemp("gta5")
    (root / "images").mkdir()
    (root / "labels").mkdir()
    photo = skdata.astronaut()
    for i, (h, w) in enumerate([(60, 70), (52, 90), (65, 65)]):
        crop = np.ascontiguousarray(photo[50 * i : 50 * i + h, 30 * i : 30 * i + w])
        Image.fromarray(crop).save(root / "images" / f"{i + 1:05d}.png")
        grey = crop.mean(axis=2)
        ids = np.select([grey < 60, grey < 140, grey < 200], [ROAD, BUILDING, CAR], 0)
        Image.fromarray(ids.astype(np.uint8), mode="L").save(root / "labels" / f"{i + 1:05d}.png")
    return root


@pytest.fixture(scope="module")
def cityscapes(tmp_path_factory) -> Path:
    ids = np.full((65, 65), ROAD)
    ids[:30] = BUILDING
    return write_cityscapes(tmp_path_factory.mktemp("cityscapes"), ids)


def test_the_shipped_config_is_adaptsegnets() -> None:
    config = train.Config.load(str(EXAMPLES / "configs" / "gta5_source_only.json"), {})
    assert (config.dataset, config.split, config.val_dataset) == ("gta5", "all", "cityscapes")
    assert (config.lr, config.momentum, config.weight_decay, config.power) == (
        2.5e-4,
        0.9,
        5e-4,
        0.9,
    )
    assert (config.max_iter, config.stop_iter, config.final_iter) == (250000, 150000, 150000)
    assert config.batch_size == 1 and config.resize == [1280, 720] and not config.flip
    assert config.loss == "upsampled" and config.aux_loss_weight == 0.1 and not config.msc
    assert (config.head_lr_mult, config.head_bias_lr_mult, config.head_bias_decay) == (
        10,
        10,
        True,
    )
    assert config.model_args == {"aux_head": True, "head_branches": 2}
    assert config.init == "adaptsegnet-init"
    assert config.mean_bgr == [104.00698793, 116.66876762, 122.67891434]  # IMG_MEAN
    network = DeepLabV2(num_classes=19, blocks=(1, 1, 1, 1), **config.model_args)
    assert train.trained_protocol(config, network) == UDA_PROTOCOL  # evaluate_cityscapes.py's


def test_validation_follows_the_protocol_the_weights_record(
    gta5, cityscapes, tmp_path, monkeypatch
) -> None:
    used = []

    def spy(*args, **kwargs):
        segmenter = Segmenter(*args, **kwargs)
        used.append(segmenter.protocol)
        return segmenter

    monkeypatch.setattr(train, "Segmenter", spy)
    resized = {"scales": [], "pad_to": None, "resize_to": [72, 40], "upsampling": "stretch"}
    config = train.Config(**{**UDA, "protocol": resized, "stop_iter": 1})
    train.train(config, str(gta5), tmp_path / "run", val_root=str(cityscapes))
    assert used and all(p.resize_to == (72, 40) and p.upsampling == "stretch" for p in used)
    assert all(p.scales == () and p.pad_to is None for p in used)


def test_every_shipped_config_parses() -> None:
    configs = sorted((EXAMPLES / "configs").glob("*.json"))
    assert EXAMPLES / "configs" / "gta5_source_only.json" in configs
    for path in configs:
        train.Config.load(str(path), {})


def test_resize_is_pil_bicubic_and_nearest_without_crop_or_mirror(gta5: Path) -> None:
    config = train.Config(**UDA)
    data = train.TrainSet(GTA5(gta5), config)
    for index in range(len(data)):
        image, label, _ = data.base[index]
        x, y = data[(index, 0)]
        assert x.shape == (3, 48, 80) and y.shape == (48, 80)
        # written out independently: PIL's filters on the RGB image and on the label values
        rgb = np.asarray(Image.fromarray(image).resize((80, 48), Image.BICUBIC), np.float32)
        bgr = (
            rgb[:, :, ::-1].transpose(2, 0, 1)
            - np.array(config.mean_bgr, np.float32)[:, None, None]
        )
        np.testing.assert_allclose(x.numpy(), bgr, rtol=0, atol=1e-4)
        expected = Image.fromarray(label.astype(np.uint8), mode="L").resize((80, 48), Image.NEAREST)
        assert np.array_equal(y.numpy(), np.asarray(expected))
        for seed in (1, 2, 3):  # nothing random: no scaling, crop or mirror
            again = data[(index, seed)]
            assert torch.equal(again[0], x) and torch.equal(again[1], y)


def test_the_upsampled_loss_is_adaptsegnets() -> None:
    """``loss_seg2 + lambda_seg * loss_seg1``: both heads' logits upsampled bilinearly with
    corners aligned to the labels, CrossEntropyLoss(ignore_index=255) over the batch."""
    torch.manual_seed(0)
    labels = torch.randint(0, 19, (2, 48, 80))
    labels[0, :10] = 255
    levels = Levels(main=torch.randn(2, 19, 7, 11), aux=torch.randn(2, 19, 7, 11))
    config = train.Config(**UDA)
    terms = train.branch_losses(levels, labels, config, (1.0,))
    assert set(terms) == {"main", "aux"}
    criterion = torch.nn.CrossEntropyLoss(ignore_index=255)
    for name in ("main", "aux"):
        up = F.interpolate(getattr(levels, name), (48, 80), mode="bilinear", align_corners=True)
        torch.testing.assert_close(terms[name], criterion(up, labels))
    total = train.weighted_sum(terms, config)
    torch.testing.assert_close(total, terms["main"] + 0.1 * terms["aux"])
    single = train.branch_losses(levels.main, labels, config, (1.0,))  # no auxiliary head
    assert set(single) == {"main"} and torch.equal(single["main"], terms["main"])


def test_the_heads_lr_and_decay() -> None:
    config = train.Config(**UDA)
    model = train.build_model(config)
    rest, weights, biases = train.param_groups(model, config)
    assert [g["lr"] for g in (rest, weights, biases)] == pytest.approx([1e-3, 1e-2, 1e-2])
    assert [g["weight_decay"] for g in (rest, weights, biases)] == [5e-4] * 3
    heads = {id(p) for name, p in model.named_parameters() if name.startswith(("aspp.", "aux."))}
    assert {id(p) for p in weights["params"] + biases["params"]} == heads  # layer5 + layer6
    assert len(weights["params"]) == len(biases["params"]) == 8
    release = train.param_groups(model, train.Config(**{**UDA, "head_lr_mult": 10.0,
                                                        "head_bias_lr_mult": 20.0,
                                                        "head_bias_decay": False}))  # fmt: skip
    assert [g["lr_mult"] for g in release] == [1.0, 10.0, 20.0]
    assert [g["weight_decay"] for g in release] == [5e-4, 5e-4, 0.0]
    default = train.Config()
    assert (default.head_lr_mult, default.head_bias_lr_mult, default.head_bias_decay) == (
        10.0,
        20.0,
        False,
    )


def initial_weights(config) -> dict[str, torch.Tensor]:
    """The network a run starts from (``prepare`` seeds before building it)."""
    torch.manual_seed(config.seed)
    return {k: v.clone() for k, v in train.build_model(config).state_dict().items()}


def changed(a: dict, b: dict, prefix: str) -> list[str]:
    return [k for k in a if k.startswith(prefix) and not torch.equal(a[k], b[k])]


def test_a_source_only_run(gta5, cityscapes, tmp_path, monkeypatch, capsys) -> None:
    seen = []
    real = train.branch_losses

    def spy(output, labels, config, scales, weight=None):
        seen.append((type(output).__name__, tuple(labels.shape)))
        return real(output, labels, config, scales, weight)

    monkeypatch.setattr(train, "branch_losses", spy)
    config_file = tmp_path / "uda.json"
    config_file.write_text(json.dumps(UDA))
    out = tmp_path / "run"
    argv = ["train.py", "--config", str(config_file), "--data", str(gta5), "--out", str(out),
            "--val-data", str(cityscapes)]  # fmt: skip
    monkeypatch.setattr(sys, "argv", argv)
    train.main()
    assert "final mIoU" in capsys.readouterr().out
    # the loss saw both heads against 80x48 labels, three times: the early stop
    assert seen == [("Levels", (1, 48, 80))] * 3
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["iterations"] == 3 and len(metrics["history"]) == 3
    # the poly schedule runs over max_iter (6), not over the early stop
    lrs = [h["lr"] for h in metrics["history"]]
    assert lrs == pytest.approx([1e-3 * (1 - i / 6) ** 0.9 for i in range(3)])
    for h in metrics["history"]:
        assert h["loss"] == pytest.approx(h["loss/main"] + 0.1 * h["loss/aux"])
    assert metrics["lineage"][-1] == "GTA5 all (pixel labels)"
    assert isinstance(train.dataset(train.Config(**UDA), str(cityscapes), "val"), Cityscapes)
    assert metrics["val"]["mean_iou"] is not None
    final = load_file(out / "final.safetensors")
    start = initial_weights(train.Config(**UDA))
    assert changed(final, start, "aux.convs.0.") and changed(final, start, "aux.convs.1.")
    assert changed(final, start, "aspp.convs.0.")
    # the rate-18 and rate-24 branches are not summed (head_branches 2): untouched
    assert not changed(final, start, "aux.convs.2.") and not changed(final, start, "aspp.convs.3.")
    with safe_open(str(out / "final.safetensors"), framework="pt") as handle:
        protocol = json.loads(handle.metadata()["protocol"])
    assert protocol["mean_bgr"] == pytest.approx(train.Config(**UDA).mean_bgr)


def test_without_the_auxiliary_loss_the_auxiliary_head_stays(gta5, cityscapes, tmp_path) -> None:
    config = train.Config(**{**UDA, "aux_loss_weight": 0.0, "stop_iter": 2})
    result = train.train(config, str(gta5), tmp_path / "run", val_root=str(cityscapes))
    assert result["iterations"] == 2
    assert all(h["loss"] == h["loss/main"] and "loss/aux" not in h for h in result["history"])
    final = load_file(tmp_path / "run" / "final.safetensors")
    start = initial_weights(config)
    assert not changed(final, start, "aux.")  # no gradient, so no weight decay either
    assert changed(final, start, "aspp.convs.0.")


def test_an_early_stop_resumes_exactly(gta5, cityscapes, tmp_path) -> None:
    config = train.Config(**UDA)
    straight = train.train(config, str(gta5), tmp_path / "straight", val_root=str(cityscapes))
    paused = train.train(config, str(gta5), tmp_path / "split", stop_at=2, val_root=str(cityscapes))
    assert paused == {} and (tmp_path / "split" / "resume.safetensors").exists()
    resumed = train.train(
        config, str(gta5), tmp_path / "split", resume=True, val_root=str(cityscapes)
    )
    assert resumed["iterations"] == straight["iterations"] == 3
    a = load_file(tmp_path / "straight" / "final.safetensors")
    b = load_file(tmp_path / "split" / "final.safetensors")
    assert all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.parametrize(
    "values, message",
    [
        ({"stop_iter": 7}, r"stop_iter must be an integer in \[1, max_iter = 6\]"),
        ({"stop_iter": 0}, "stop_iter must be"),
        ({"head_lr_mult": 0}, r"head_lr_mult must be a number in \(0, 100\]"),
        ({"head_bias_lr_mult": "10"}, "head_bias_lr_mult must be"),
        ({"head_bias_decay": 1}, "head_bias_decay must be true or false"),
        ({"aux_loss_weight": -0.1}, r"aux_loss_weight must be a number in \[0, 10\]"),
        ({"aux_loss_weight": float("nan")}, "aux_loss_weight must be"),
        ({"loss": "nearest"}, 'aux_loss_weight 0.1 .* needs "loss": "upsampled"'),
        ({"model_args": {"head_branches": 2}}, r'needs .*"model_args": \{"aux_head": true\}'),
        ({"msc": True}, 'loss "upsampled" trains the network at one scale: set "msc": false'),
        ({"loss": "focal"}, "loss must be one of"),
        ({"resize": [80]}, r"resize must be \[width, height\]"),
        ({"resize": [80, 0]}, "resize must be"),
        ({"flip": True}, r"resize \[80, 48\] replaces .* set \{\"flip\": false\}"),
        ({"scale_factors": [0.5, 1.0]}, r"set \{\"scale_factors\": \[1.0\]\}"),
        ({"crop_size": 321}, r"set \{\"crop_size\": null\}"),
        ({"resize": None}, r"crop_size must be an integer >= 1 \(null only with resize\)"),
        ({"loss": "caffe", "aux_loss_weight": 0}, "needs sides of the form 8k \\+ 1"),
        ({"model_args": {"head_branches": 5, "aux_head": True}}, "model_args .* do not fit"),
        ({"model_args": {"typo": 1}}, "unexpected keyword argument 'typo'"),
        ({"model_args": {"blocks": [1, 1, 1, 1]}}, "have their own config keys"),
        ({"model_args": ["aux_head"]}, "model_args must be a JSON object"),
        ({"val_dataset": "kitti"}, "val_dataset must be one of"),
        ({"protocol": {"pad_to": 100}}, "protocol must be null or .*pad_to"),
        ({"protocol": {"mean_bgr": [0, 0, 0]}}, "protocol's mean is the config's mean_bgr"),
        ({"protocol": {"resolution": 1}}, "unknown test protocol keys"),
    ],
)
def test_the_config_refuses_bad_values(tmp_path: Path, values: dict, message: str) -> None:
    path = tmp_path / "c.json"
    path.write_text(json.dumps({**UDA, **values}))
    with pytest.raises(train.ConfigError, match=message):
        train.Config.load(str(path), {})


def test_the_protocol_key_sets_the_final_weights_protocol() -> None:
    config = train.Config(**{**UDA, "protocol": {"scales": [], "pad_to": None}})
    model = train.build_model(config)
    protocol = model.pretrained_info.protocol
    assert protocol.scales == () and protocol.pad_to is None
    assert protocol.mean_bgr == tuple(config.mean_bgr)
    assert protocol.msc_mode == model.default_protocol.msc_mode  # the rest is the family's
    plain = train.build_model(train.Config(**{**UDA, "protocol": None}))
    assert plain.pretrained_info.protocol.pad_to == model.default_protocol.pad_to == 513


@pytest.mark.slow
@pytest.mark.parametrize("aux_loss_weight", [0.1, 0.0])
def test_torchrun_with_parameters_no_loss_reaches(gta5, cityscapes, tmp_path, aux_loss_weight):
    """The unsummed branches (head_branches 2), and the auxiliary head without its loss, get no
    gradient: DistributedDataParallel is told so, and two ranks end with the same weights."""
    config = {**UDA, "batch_size": 2, "stop_iter": 2, "aux_loss_weight": aux_loss_weight}
    config_file = tmp_path / "uda.json"
    config_file.write_text(json.dumps(config))
    env = {**os.environ, "OMP_NUM_THREADS": "1", "CUDA_VISIBLE_DEVICES": ""}
    command = [
        sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--standalone",
        str(EXAMPLES / "train.py"), "--config", str(config_file), "--data", str(gta5),
        "--val-data", str(cityscapes), "--out", str(tmp_path / "ddp"),
    ]  # fmt: skip
    run = subprocess.run(command, capture_output=True, text=True, env=env, timeout=600)
    assert run.returncode == 0, run.stderr[-3000:]
    metrics = json.loads((tmp_path / "ddp" / "metrics.json").read_text())
    assert metrics["iterations"] == 2
    sums = metrics["rank_checksums"]
    assert len(sums) == 2 and sums[0] == sums[1]
