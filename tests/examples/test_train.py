"""examples/train.py on small synthetic data (CPU): the release's loss and augmentation,
initialisations, datasets, torchrun, exact resume, and non-finite losses."""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image
from safetensors.torch import load_file
from skimage import data as skdata

from deeplabv2 import MultiScale, Segmenter
from deeplabv2.cli.writers import save_labels
from deeplabv2.data import VOCSegmentation
from deeplabv2.models import deeplab_largefov_vgg16, deeplab_v2_resnet101
from deeplabv2.msc import MultiScaleOutput

from ..test_metrics import numpy_scores
from ..voc_fixture import write_voc
from ..weights.caffe_files import write_caffemodel
from ..weights.vgg_reference import synthetic_vgg_blobs

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def load_example(name: str):
    spec = importlib.util.spec_from_file_location(name, EXAMPLES / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


train = load_example("train")

TINY = dict(
    split="val",
    init=None,
    blocks=[1, 1, 1, 1],
    max_iter=4,
    batch_size=2,
    crop_size=33,
    checkpoint_every=2,
    val_every=100,
    lr=1e-4,
)


@pytest.fixture(scope="module")
def voc(tmp_path_factory) -> Path:
    return write_voc(tmp_path_factory.mktemp("data") / "voc")


def independent_release_loss(fused, x1, x075, x05, labels) -> torch.Tensor:
    """The release's four terms written out: labels subsampled by Interp (label[::8] and
    label[::16]), the 0.75 logits upsampled with corners aligned, per-image VALID averaging."""
    label8, label16 = labels[:, ::8, ::8], labels[:, ::16, ::16]
    up = F.interpolate(x075, size=label8.shape[-2:], mode="bilinear", align_corners=True)
    total = 0.0
    for image in range(labels.shape[0]):
        for logits, target in ((fused, label8), (x1, label8), (up, label8), (x05, label16)):
            z, t = logits[image], target[image]
            valid = t != 255
            log_p = torch.log_softmax(z, dim=0)
            picked = log_p.gather(0, t.clamp(max=z.shape[0] - 1)[None])[0]
            total = total - picked[valid].sum() / max(1, int(valid.sum()))
    return total / labels.shape[0]


def test_release_loss_equals_the_rules() -> None:
    torch.manual_seed(0)
    labels = torch.randint(0, 5, (2, 321, 321))
    labels[0, :40] = 255
    labels[1] = 255  # an image without labelled pixels contributes 0, as in Caffe
    labels[1, 100:110, 200:260] = 3
    output = MultiScaleOutput(
        (torch.randn(2, 5, 41, 41), torch.randn(2, 5, 31, 31), torch.randn(2, 5, 21, 21)),
        torch.randn(2, 5, 41, 41),
    )
    config = train.Config(**{**TINY, "num_classes": 5, "class_names": None})
    terms = train.branch_losses(output, labels, config, (1.0, 0.75, 0.5))
    assert set(terms) == {"fused", "x1", "x0.75", "x0.5"}
    ours = sum(t.sum() for t in terms.values()) / 2
    expected = independent_release_loss(output.fused, *output.per_scale, labels)
    torch.testing.assert_close(ours, expected)
    nearest = train.Config(**{**TINY, "num_classes": 5, "class_names": None, "loss": "nearest"})
    port = sum(train.branch_losses(output, labels, nearest, (1.0, 0.75, 0.5)).values())
    assert abs(float(port) - float(expected)) > 1e-3  # a different loss
    # label row 40 of the 41x41 targets is input row 320 (nearest-resize takes row 313)
    assert torch.equal(labels[:, ::8, ::8][:, 40], labels[:, 320, ::8])


def test_augmentation_follows_image_seg_data() -> None:
    class One:
        def __len__(self):
            return 1

        def __getitem__(self, index):
            image = np.full((100, 80, 3), 200, np.uint8)
            label = np.full((100, 80), 7, np.int64)
            return image, label, "one"

    config = train.Config(**{**TINY, "crop_size": 65, "scale_factors": [0.5]})
    data = train.TrainSet(One(), config)
    seen = set()
    for seed in range(20):
        x, y = data[(0, seed)]
        assert x.shape == (3, 65, 65) and y.shape == (65, 65)
        # 100x80 scaled by 0.5 is 50x40: the rest is the mean (0 after subtraction) / 255
        image_pixels = (y == 7).nonzero()
        assert len(image_pixels) == 50 * 40
        assert set(torch.unique(y).tolist()) == {7, 255}
        assert torch.all(x[:, y == 255] == 0)
        expected = 200 - torch.tensor(config.mean_bgr).view(3, 1)
        torch.testing.assert_close(x[:, y == 7], expected.expand(3, 2000))
        seen.add(int(image_pixels[:, 1].min()))  # 0: not mirrored; 25: mirrored
    assert seen == {0, 25}  # the crop sits at (0, 0); mirroring moves the image right
    sizes = set()
    config = train.Config(**{**TINY, "crop_size": 33})
    for seed in range(40):
        factor = config.scale_factors[np.random.default_rng(seed).integers(5)]
        sizes.add(factor)
    assert sizes == {0.5, 0.75, 1.0, 1.25, 1.5}  # drawn from the release's list


def test_loss_of_a_repeated_batch_falls(voc: Path) -> None:
    config = train.Config(**TINY)
    torch.manual_seed(0)
    model = train.build_model(config).train()
    net = MultiScale(model)
    data = train.TrainSet(VOCSegmentation(voc, "val"), config)
    x, y = (torch.stack(t) for t in zip(data[(0, 1)], data[(1, 2)]))
    optimizer = torch.optim.SGD(train.param_groups(model, config), lr=config.lr, momentum=0.9)
    losses = []
    for _ in range(15):
        optimizer.zero_grad()
        terms = train.branch_losses(net(x), y, config, net.scales)
        loss = sum(t.sum() for t in terms.values()) / 2
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert len(terms) == 4  # three scales and the fusion
    assert losses[-1] < 0.8 * losses[0]


def test_param_groups_and_poly_schedule(voc: Path, tmp_path: Path) -> None:
    config = train.Config(**TINY)
    model = train.build_model(config)
    groups = train.param_groups(model, config)
    assert [g["lr"] for g in groups] == pytest.approx([1e-4, 1e-3, 2e-3])
    assert [g["weight_decay"] for g in groups] == [5e-4, 5e-4, 0.0]
    assert sum(len(g["params"]) for g in groups) == sum(p.requires_grad for p in model.parameters())
    assert len(groups[1]["params"]) == len(groups[2]["params"]) == 4  # the ASPP's 4 convs
    vgg = train.param_groups(deeplab_largefov_vgg16(num_classes=3), config)
    assert [len(g["params"]) for g in vgg] == [13 * 2 + 4, 1, 1]  # fc8 alone is the classifier
    result = train.train(config, str(voc), tmp_path / "run")
    lrs = [h["lr"] for h in result["history"]]
    expected = [1e-4 * (1 - i / 4) ** 0.9 for i in range(4)]
    assert lrs == pytest.approx(expected)
    log = [json.loads(line) for line in (tmp_path / "run" / "log.jsonl").read_text().splitlines()]
    assert {"loss/fused", "loss/x1", "loss/x0.75", "loss/x0.5", "lr"} <= set(log[0])


def write_legacy_checkpoint(run_dir: Path) -> None:
    """Turn a run's resume file into the pickled ``checkpoint.pt`` of older versions."""
    state = train.read_resume_file(run_dir / "resume.safetensors")
    legacy = {
        "model": state.model,
        "optimizer": state.optimizer,
        "iteration": state.iteration,
        "rng": {"torch": state.rng_torch, "python": state.rng_python},
        "config": {},
    }
    torch.save(legacy, run_dir / "checkpoint.pt")
    (run_dir / "resume.safetensors").unlink()


def test_resume_reproduces_the_uninterrupted_run(voc: Path, tmp_path: Path) -> None:
    config = train.Config(**TINY)
    train.train(config, str(voc), tmp_path / "straight")
    assert train.train(config, str(voc), tmp_path / "split", stop_at=3) == {}
    assert (tmp_path / "split" / "resume.safetensors").exists()
    assert not (tmp_path / "split" / "checkpoint.pt").exists()  # no pickle is written
    shutil.copytree(tmp_path / "split", tmp_path / "legacy")
    train.train(config, str(voc), tmp_path / "split", resume=True)
    a = load_file(tmp_path / "straight" / "final.safetensors")
    b = load_file(tmp_path / "split" / "final.safetensors")
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a)
    start = train.build_model(config).state_dict()
    assert not all(torch.equal(a[k], start[k]) for k in a)  # training changed the weights
    # an older version's checkpoint.pt: refused with the way on, then converted exactly
    write_legacy_checkpoint(tmp_path / "legacy")
    with pytest.raises(train.CheckpointError, match="--convert-checkpoint"):
        train.train(config, str(voc), tmp_path / "legacy", resume=True)
    train.train(config, str(voc), tmp_path / "legacy", resume=True, convert_checkpoint=True)
    c = load_file(tmp_path / "legacy" / "final.safetensors")
    assert all(torch.equal(a[k], c[k]) for k in a)


class Planted:
    """Unpickling this creates ``marker``: what a planted checkpoint could do."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (open, (str(self.marker), "w"))


def test_resume_never_unpickles_a_planted_checkpoint(voc: Path, tmp_path: Path) -> None:
    config = train.Config(**{**TINY, "msc": False})
    marker = tmp_path / "marker"
    out = tmp_path / "run"
    out.mkdir()
    planted = {"model": Planted(marker), "optimizer": {}, "iteration": 2, "rng": {}}
    torch.save(planted, out / "checkpoint.pt")
    with pytest.raises(ValueError, match="--convert-checkpoint") as error:
        train.train(config, str(voc), out, resume=True)
    assert "pickle" in str(error.value)
    assert not marker.exists()
    with pytest.raises(ValueError, match="refused") as error:  # weights_only=True refuses it
        train.train(config, str(voc), out, resume=True, convert_checkpoint=True)
    assert "nothing in it was run" in str(error.value)
    assert not marker.exists()
    # the same bytes under the new name are not a safetensors file
    (out / "checkpoint.pt").rename(out / "resume.safetensors")
    with pytest.raises(ValueError, match="not a resume file"):
        train.train(config, str(voc), out, resume=True)
    assert not marker.exists()
    (out / "resume.safetensors").unlink()
    with pytest.raises(ValueError, match="no .*resume.safetensors to continue from"):
        train.train(config, str(voc), out, resume=True)


def test_final_weights_load_into_the_full_model(voc: Path, tmp_path: Path) -> None:
    config = train.Config(**{**TINY, "blocks": [3, 4, 23, 3], "max_iter": 1, "batch_size": 1})
    result = train.train(config, str(voc), tmp_path / "full")
    model = deeplab_v2_resnet101(pretrained=str(tmp_path / "full" / "final.safetensors"))
    assert model.class_names[15] == "person"  # class names and protocol travel with the file
    assert model.pretrained_info.protocol.pad_to == 513
    saved = load_file(tmp_path / "full" / "final.safetensors")
    assert all(torch.equal(model.state_dict()[k], saved[k]) for k in saved)
    # the reported score is that of the saved model, computed independently here
    segmenter = Segmenter(model, scales=())
    preds, targets = [], []
    for image, label, _ in VOCSegmentation(voc, "val"):
        preds.append(segmenter.predict(image).labels.numpy())
        targets.append(label)
    expected = numpy_scores(preds, targets, 21)["mean_iou"]
    assert result["val"]["mean_iou"] == pytest.approx(expected, rel=1e-9)


@pytest.fixture(scope="module")
def pseudo_labels(tmp_path_factory) -> Path:
    """A folder dataset whose labels are indexed PNGs as ``deeplabv2 predict`` writes them."""
    root = tmp_path_factory.mktemp("folder")
    (root / "images").mkdir()
    photo = skdata.astronaut()
    names = []
    for i in range(4):
        crop = np.ascontiguousarray(photo[60 * i : 60 * i + 57, 40 * i : 40 * i + 71])
        Image.fromarray(crop).save(root / "images" / f"p{i}.jpg")
        labels = (crop.mean(axis=2) > 120).astype(np.int64) * (i % 3 + 1)
        save_labels(root / "labels" / f"p{i}.png", labels, force=False)
        names.append(f"p{i}")
    (root / "train.txt").write_text("\n".join(names))
    (root / "val.txt").write_text("\n".join(names[:2]))
    return root


@pytest.fixture(scope="module")
def imagenet_init(tmp_path_factory) -> Path:
    """An ImageNet-style LargeFOV initialisation: conv1_1 .. fc7, and an ImageNet fc8."""
    layers = synthetic_vgg_blobs(large_fov=True, num_classes=1000)
    path = tmp_path_factory.mktemp("init") / "vgg16_20M.caffemodel"
    return write_caffemodel(path, layers, blobless=False)


def test_torchrun_from_an_imagenet_init_on_pseudo_labels(tmp_path, pseudo_labels, imagenet_init):
    config = {
        "model": "deeplab_largefov_vgg16",
        "init": str(imagenet_init),
        "dataset": "folder",
        "split": "train",
        "val_split": "val",
        "num_classes": 4,
        "class_names": ["background", "a", "b", "c"],
        "max_iter": 2,
        "batch_size": 2,
        "crop_size": 41,
        "checkpoint_every": 1,
        "val_every": 100,
        "msc": False,
    }
    config_file = tmp_path / "wsss.json"
    config_file.write_text(json.dumps(config))
    env = {**os.environ, "OMP_NUM_THREADS": "1", "CUDA_VISIBLE_DEVICES": ""}
    command = [
        sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--standalone",
        str(EXAMPLES / "train.py"), "--config", str(config_file), "--data", str(pseudo_labels),
        "--out", str(tmp_path / "ddp"),
    ]  # fmt: skip
    run = subprocess.run(command, capture_output=True, text=True, env=env, timeout=600)
    assert run.returncode == 0, run.stderr[-3000:]
    metrics = json.loads((tmp_path / "ddp" / "metrics.json").read_text())
    sums = metrics["rank_checksums"]
    assert len(sums) == 2 and sums[0] == sums[1]
    model = deeplab_largefov_vgg16(pretrained=tmp_path / "ddp" / "final.safetensors")
    assert model.class_names == ("background", "a", "b", "c")
    assert model.pretrained_info.protocol.crf == "vgg16-voc"


def test_a_non_finite_loss_stops_the_run(voc: Path, tmp_path: Path, monkeypatch) -> None:
    config = train.Config(**{**TINY, "max_iter": 5, "checkpoint_every": 1})
    real = train.branch_losses
    calls = []

    def poisoned(output, labels, config, scales, weight=None):
        calls.append(1)
        terms = real(output, labels, config, scales, weight)
        if len(calls) >= 3:  # from the third iteration on
            terms["fused"] = terms["fused"] * float("nan")
        return terms

    monkeypatch.setattr(train, "branch_losses", poisoned)
    with pytest.raises(train.NonFiniteLossError) as error:
        train.train(config, str(voc), tmp_path / "nan")
    message = str(error.value)
    assert "iteration 3: the loss is not finite" in message
    assert "checkpoint.safetensors (iteration 2" in message
    assert not (tmp_path / "nan" / "final.safetensors").exists()
    saved = load_file(tmp_path / "nan" / "checkpoint.safetensors")
    assert all(torch.isfinite(t).all() for t in saved.values())
    # skip_nonfinite skips the bad steps instead and finishes with finite weights
    calls.clear()
    skipping = train.Config(**{**TINY, "max_iter": 5, "checkpoint_every": 1,
                               "skip_nonfinite": True})  # fmt: skip
    result = train.train(skipping, str(voc), tmp_path / "skip")
    assert [h.get("skipped", 0) for h in result["history"]] == [0, 0, 1, 1, 1]
    final = load_file(tmp_path / "skip" / "final.safetensors")
    assert all(torch.isfinite(t).all() for t in final.values())


def test_config_rejects_unknown_keys(tmp_path: Path) -> None:
    path = tmp_path / "c.json"
    path.write_text(json.dumps({"learning_rate": 1}))
    with pytest.raises(ValueError, match="unknown config keys"):
        train.Config.load(str(path), {})
    shipped = train.Config.load(str(EXAMPLES / "configs" / "voc12.json"), {})
    assert (shipped.lr, shipped.batch_size, shipped.max_iter) == (2.5e-4, 10, 20000)
    assert shipped.loss == "caffe" and shipped.scale_factors == [0.5, 0.75, 1.0, 1.25, 1.5]
    for name in ("voc12_simple", "voc12_imagenet", "wsss_largefov", "cocostuff164k", "cityscapes"):
        train.Config.load(str(EXAMPLES / "configs" / f"{name}.json"), {})  # all valid
    with pytest.raises(ValueError, match="loss must be"):
        train.Config(loss="focal")


def test_a_class_set_scored_within_a_larger_one_is_not_trained(tmp_path: Path) -> None:
    """cityscapes13 labels the 16 classes (the papers' 13-class score averages 13 of a 16-class
    network's IoUs): 13 outputs trained on them would be wrong, so they are refused."""
    from ..data.test_driving import write_cityscapes

    root = write_cityscapes(tmp_path, np.full((65, 65), 7))
    for names, count in (("cityscapes16", 16), ("cityscapes13", 13)):
        config = train.Config(
            **{**TINY, "dataset": "cityscapes", "class_names": names, "num_classes": count}
        )
        if count == 16:
            assert len(train.dataset(config, str(root), "val")) == 1
            continue
        with pytest.raises(ValueError, match="labels hold 16 classes, not num_classes=13"):
            train.dataset(config, str(root), "val")


QUICK = dict(TINY, msc=False, max_iter=2, checkpoint_every=100, val_limit=1)


def test_config_refuses_a_json_list_and_values_out_of_range(tmp_path: Path) -> None:
    path = tmp_path / "c.json"
    path.write_text(json.dumps([{"lr": 0.1}]))
    with pytest.raises(ValueError, match="a config is a JSON object"):
        train.Config.load(str(path), {})
    path.write_text("{lr: 0.1")
    with pytest.raises(ValueError, match="not valid JSON"):
        train.Config.load(str(path), {})
    with pytest.raises(ValueError, match="cannot read the config"):
        train.Config.load(str(tmp_path / "missing.json"), {})
    bad = {
        "lr": [-1, 0, 1e9, float("nan"), "0.1", True],
        "max_iter": [0, -5, 2.5],
        "batch_size": [0],
        "accumulate": [0, 3],  # 3 does not divide batch_size 2
        "momentum": [1.5, -0.1],
        "weight_decay": [-1, float("inf")],
        "power": [-1],
        "crop_size": [0],
        "checkpoint_every": [0],
        "val_every": [0],
        "val_limit": [0],
        "scale_factors": [[], [0.5, -1], [float("nan")]],
        "mean_bgr": [[1, 2], [1, 2, float("nan")]],
        "blocks": [[1, 1], [1, 0, 1, 1]],
        "ignore_index": [3],  # a class index
        "skip_nonfinite": ["yes"],
        "class_names": [7],
        "seed": [-1],
    }
    for key, values in bad.items():
        for value in values:
            path.write_text(json.dumps({**TINY, key: value}))
            with pytest.raises(ValueError, match=key):
                train.Config.load(str(path), {})
    train.Config(**TINY)  # the tests' own config is valid


def test_bad_options_and_data_are_refused_before_any_output(voc, tmp_path, monkeypatch, capsys):
    config = tmp_path / "c.json"
    config.write_text(json.dumps(QUICK))
    out = tmp_path / "run"
    base = ["train.py", "--config", str(config), "--out", str(out)]
    monkeypatch.setattr(sys, "argv", [*base, "--data", str(voc), "--lr", "1e9"])
    with pytest.raises(SystemExit) as stopped:
        train.main()
    assert stopped.value.code == 2 and "lr must be a number in (0, 1]" in capsys.readouterr().err
    monkeypatch.setattr(sys, "argv", [*base, "--data", str(tmp_path / "missing")])
    with pytest.raises(SystemExit) as stopped:
        train.main()
    assert "missing is not a directory" in str(stopped.value.code)
    assert not out.exists()  # the data is checked before the output folder is made
    with pytest.raises(FileNotFoundError):
        train.train(train.Config(**QUICK), str(tmp_path / "missing"), out)
    assert not out.exists()


def poison(monkeypatch, iterations: set) -> None:
    """Non-finite losses at the given (1-based) iterations of a run without accumulation."""
    real = train.branch_losses
    calls = []

    def poisoned(output, labels, config, scales, weight=None):
        calls.append(1)
        terms = real(output, labels, config, scales, weight)
        if len(calls) in iterations:
            terms = {k: v * float("nan") for k, v in terms.items()}
        return terms

    monkeypatch.setattr(train, "branch_losses", poisoned)


def strict_json(text: str):
    def refuse(constant):
        raise ValueError(f"{constant} is not JSON")

    return json.loads(text, parse_constant=refuse)


@pytest.mark.parametrize(
    "poisoned, code, message",
    [
        ({2}, None, "skipped 1 of 3 steps"),  # some skipped: a summary, success
        ({3}, "the last step's loss", "skipped 1 of 3 steps"),  # ends diverging: a failure
        ({1, 2, 3}, "every step was skipped", "skipped 3 of 3 steps"),
    ],
)
def test_skipped_steps_are_summarised_and_json_stays_valid(
    voc, tmp_path, monkeypatch, capsys, poisoned, code, message
) -> None:
    config = tmp_path / "c.json"
    config.write_text(json.dumps({**QUICK, "max_iter": 3, "skip_nonfinite": True}))
    out = tmp_path / "run"
    poison(monkeypatch, poisoned)
    argv = ["train.py", "--config", str(config), "--data", str(voc), "--out", str(out)]
    monkeypatch.setattr(sys, "argv", argv)
    if code is None:
        train.main()
    else:
        with pytest.raises(SystemExit) as stopped:
            train.main()
        assert code in str(stopped.value.code)  # a message: exit status 1
    assert message in capsys.readouterr().err
    metrics = strict_json((out / "metrics.json").read_text())
    assert metrics["skipped_iterations"] == sorted(poisoned)
    assert [h["loss"] is None for h in metrics["history"]] == [i in poisoned for i in (1, 2, 3)]
    log = [strict_json(line) for line in (out / "log.jsonl").read_text().splitlines()]
    assert [r.get("skipped") == 1.0 for r in log[:3]] == [i in poisoned for i in (1, 2, 3)]
