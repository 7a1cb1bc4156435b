"""Train DeepLab v2 with the release's recipe (optional example, not part of the API).

One CPU, one GPU or many (``torchrun``, DistributedDataParallel: NCCL on GPUs, gloo on CPUs):

    python examples/train.py --config examples/configs/voc12.json --data VOCdevkit/VOC2012 \
        --out runs/voc12
    torchrun --nproc_per_node 4 examples/train.py --config examples/configs/voc12.json ...

The recipe (DeepLab v2 release: ``train.prototxt``, ``solver.prototxt`` and the
``ImageSegData`` layer; see ``docs/training.md`` for the table and the sources): SGD with
momentum 0.9 and weight decay 5e-4, poly learning rate ``lr * (1 - it / max_iter) ** 0.9`` from
2.5e-4, x10 for the head's weights and x20 for its biases (no decay on them), 20,000 iterations
of 10 images, each image scaled by a factor drawn from {0.5, 0.75, 1, 1.25, 1.5}, padded with
the mean (labels with 255) and cropped to 321x321 at random, mirrored with probability 1/2;
frozen BatchNorm; the MSC loss of the release (``loss: "caffe"``): the cross-entropies of the
fused logits and of the 1.0 branch against the labels subsampled by 8 (``label[::8, ::8]``),
of the 0.75 branch upsampled to the 1.0 size against the same labels, and of the 0.5 branch
against ``label[::16, ::16]``, each averaged over the labelled pixels of an image, summed, and
averaged over the images (Caffe's batch of 1 with ``iter_size`` 10). ``loss: "nearest"`` is the
PyTorch port's variant (labels resized by nearest neighbour to every branch, averaged over the
batch's pixels).

Datasets (``dataset`` in the config): ``voc`` (VOC layout or the release's list files),
``folder`` (``images/`` + ``labels/`` + a list file: pseudo-labels written by
``deeplabv2 predict`` are valid), ``cocostuff164k``, ``cocostuff10k``, ``cityscapes``.
Initialisations (``init``): a registry name of the network (``coco-init``, ``imagenet``,
``torchvision-imagenet``...), a local file, or null.

Every ``checkpoint_every`` iterations ``<out>/checkpoint.safetensors`` (model) and
``<out>/checkpoint.pt`` (optimizer, iteration, RNG) are written atomically by rank 0;
``--resume`` continues bit-exactly. A non-finite loss or gradient stops the run with a message
naming the iteration and the last good checkpoint (``skip_nonfinite`` skips such steps
instead); no file with non-finite weights is ever written. The final model is
``<out>/final.safetensors`` (with its class names and test protocol), loadable with the
network's builder. Validation (every ``val_every`` iterations and at the end) is
``deeplabv2.evaluate.evaluate`` with the release's protocol, sharded across ranks. Losses (per
branch), learning rate and validation mIoU go to ``<out>/log.jsonl`` and, when ``tensorboard``
is installed, to ``<out>/tensorboard``.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import random
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any, Optional

import numpy as np
import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn
from tqdm import tqdm

from deeplabv2 import MultiScale, PretrainedInfo, Segmenter, atomic_write
from deeplabv2.data import (
    CAFFE_MEAN_BGR,
    Cityscapes,
    COCOStuff,
    SegmentationFolder,
    VOCSegmentation,
)
from deeplabv2.data.classes import resolve_class_names
from deeplabv2.distributed import Ranks, start, stop
from deeplabv2.evaluate import evaluate
from deeplabv2.interp import resize_bilinear
from deeplabv2.models import DeepLabV2, get_model, list_models, save_weights
from deeplabv2.msc import MultiScaleOutput

DATASETS = ("voc", "folder", "cocostuff164k", "cocostuff10k", "cityscapes")


@dataclass
class Config:
    """Training settings; a JSON config file sets any of them."""

    model: str = "deeplab_v2_resnet101"
    dataset: str = "voc"
    split: str = "trainaug"
    val_split: str = "val"
    num_classes: int = 21
    class_names: Optional[Any] = "voc"  # "voc", "cocostuff", a file, a list, or null
    ignore_index: int = 255
    mean_bgr: list[float] = field(default_factory=lambda: list(CAFFE_MEAN_BGR))
    init: Optional[str] = "coco-init"  # registry name of the network, a file, or null
    blocks: list[int] = field(default_factory=lambda: [3, 4, 23, 3])  # ResNet only (tests)
    lr: float = 2.5e-4
    momentum: float = 0.9
    weight_decay: float = 5e-4
    power: float = 0.9
    max_iter: int = 20000
    batch_size: int = 10  # per step, over all ranks and accumulation steps
    accumulate: int = 1
    crop_size: int = 321
    scale_factors: list[float] = field(default_factory=lambda: [0.5, 0.75, 1.0, 1.25, 1.5])
    flip: bool = True
    msc: bool = True
    loss: str = "caffe"  # "caffe" (the release) or "nearest" (the PyTorch port)
    amp: bool = False
    seed: int = 0
    checkpoint_every: int = 1000
    val_every: int = 2000
    val_limit: Optional[int] = None
    skip_nonfinite: bool = False

    def __post_init__(self) -> None:
        if self.model not in list_models():
            raise ValueError(f"model must be one of {list_models()}, got {self.model!r}")
        if self.dataset not in DATASETS:
            raise ValueError(f"dataset must be one of {DATASETS}, got {self.dataset!r}")
        if self.loss not in ("caffe", "nearest"):
            raise ValueError(f"loss must be 'caffe' or 'nearest', got {self.loss!r}")
        if len(self.mean_bgr) != 3:
            raise ValueError(f"mean_bgr needs 3 values (B, G, R), got {self.mean_bgr}")

    @classmethod
    def load(cls, path: Optional[str], overrides: dict) -> Config:
        values = json.loads(Path(path).read_text()) if path else {}
        values.update({k: v for k, v in overrides.items() if v is not None})
        known = {f.name for f in fields(cls)}
        unknown = set(values) - known
        if unknown:
            raise ValueError(f"unknown config keys {sorted(unknown)}; known: {sorted(known)}")
        return cls(**values)

    def names(self) -> tuple[str, ...]:
        """The class names (empty if unknown); their count must be ``num_classes``."""
        names = self.class_names
        if names is None:
            return ()
        names = tuple(names) if isinstance(names, list) else resolve_class_names(names)
        if len(names) != self.num_classes:
            raise ValueError(f"{len(names)} class names for num_classes={self.num_classes}")
        return names


class NonFiniteLossError(RuntimeError):
    """The loss or a gradient became NaN or infinite."""


# -- data -----------------------------------------------------------------------------------------


def dataset(config: Config, root: str, split: str, limit: Optional[int] = None):
    """The ``(image, label, name)`` dataset the config names."""
    if config.dataset == "voc":
        return VOCSegmentation(root, split, limit=limit)
    if config.dataset == "folder":
        return SegmentationFolder(root, split, class_names=config.names(), limit=limit)
    if config.dataset.startswith("cocostuff"):
        return COCOStuff(root, split, version=config.dataset[len("cocostuff") :], limit=limit)
    return Cityscapes(root, split, limit=limit)


class TrainSet(torch.utils.data.Dataset):
    """Augmented ``(input, label)`` pairs as the release's ``ImageSegData`` makes them;
    ``dataset[(index, seed)]`` is deterministic in ``seed``.

    A scale factor drawn from ``scale_factors`` resizes the image (bilinear) and the label
    (nearest) to ``int(side * factor)``; both are padded at the bottom/right to the crop size
    (the image with the mean, the label with ``ignore_index``), cropped at a random place and
    mirrored with probability 1/2; then the mean is subtracted (BGR).
    """

    def __init__(self, base: Any, config: Config) -> None:
        self.base, self.config = base, config
        self.mean = torch.tensor(config.mean_bgr, dtype=torch.float32).view(3, 1, 1)

    def __len__(self) -> int:
        return len(self.base)

    def __getitem__(self, key: tuple[int, int]) -> tuple[torch.Tensor, torch.Tensor]:
        index, seed = key
        rng = np.random.default_rng(seed)
        image, label, _ = self.base[index]
        bgr = torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1).flip(0).float()
        y = torch.from_numpy(np.asarray(label, dtype=np.int64))
        scale = self.config.scale_factors[int(rng.integers(len(self.config.scale_factors)))]
        if scale != 1:
            h, w = y.shape
            size = (max(1, int(h * scale)), max(1, int(w * scale)))  # Caffe truncates
            bgr = F.interpolate(bgr[None], size=size, mode="bilinear", align_corners=False)[0]
            bgr = bgr.round().clamp(0, 255)  # cv::resize of a uint8 image gives uint8
            y = F.interpolate(y[None, None].float(), size=size, mode="nearest")[0, 0].long()
        crop = self.config.crop_size
        pad_h, pad_w = max(0, crop - y.shape[0]), max(0, crop - y.shape[1])
        x = bgr - self.mean
        if pad_h or pad_w:  # the mean in pixel space is zero after subtraction
            x = F.pad(x, (0, pad_w, 0, pad_h), value=0.0)
            y = F.pad(y, (0, pad_w, 0, pad_h), value=self.config.ignore_index)
        top = int(rng.integers(0, x.shape[1] - crop + 1))
        left = int(rng.integers(0, x.shape[2] - crop + 1))
        x = x[:, top : top + crop, left : left + crop]
        y = y[top : top + crop, left : left + crop]
        if self.config.flip and rng.random() < 0.5:
            x, y = x.flip(-1), y.flip(-1)
        return x.contiguous(), y.contiguous()


def batch_keys(
    n: int, config: Config, iteration: int, micro: int, rank: int, world: int
) -> list[tuple[int, int]]:
    """The ``(index, augmentation seed)`` pairs of one micro-batch of one rank.

    Sample order comes from a ``DistributedSampler`` (one shuffled pass per epoch, split across
    ranks); everything is a function of the iteration, so resuming needs no loader state.
    """
    per_rank = config.batch_size // (world * config.accumulate)
    position = (iteration * config.accumulate + micro) * per_rank
    per_epoch = math.ceil(n / world)
    sampler = torch.utils.data.DistributedSampler(
        range(n), num_replicas=world, rank=rank, shuffle=True, seed=config.seed
    )
    orders: dict[int, list[int]] = {}  # one permutation per epoch the micro-batch touches
    keys = []
    for offset in range(position, position + per_rank):
        epoch, slot = divmod(offset, per_epoch)
        if epoch not in orders:
            sampler.set_epoch(epoch)
            orders[epoch] = list(sampler)
        seed = hash((config.seed, rank, offset)) & 0x7FFFFFFF
        keys.append((orders[epoch][slot], seed))
    return keys


# -- the loss ---------------------------------------------------------------------------------


def per_image_ce(logits: torch.Tensor, labels: torch.Tensor, ignore_index: int) -> torch.Tensor:
    """Cross-entropy of each image averaged over its labelled pixels: ``(B,)`` (Caffe's
    ``SoftmaxWithLoss`` with ``VALID`` normalisation on a batch of one; 0 for no pixels)."""
    pixels = F.cross_entropy(logits.float(), labels, ignore_index=ignore_index, reduction="none")
    valid = (labels != ignore_index).flatten(1).sum(1).clamp(min=1)
    return pixels.flatten(1).sum(1) / valid


def release_targets(
    output: MultiScaleOutput, scales: Sequence[float], labels: torch.Tensor
) -> list[tuple[str, torch.Tensor, torch.Tensor]]:
    """``(name, logits, labels)`` of each term of the release's MSC loss.

    Caffe's ``Interp`` with shrink factor ``k`` samples the label at integer positions, so it
    is ``label[::k, ::k]``: ``k = 8`` for the 1.0 branch and the fusion, ``k = 16`` for the 0.5
    branch. A branch whose stride is not an integer (0.75: 31x31 logits for a 321 crop) is
    upsampled to the 1.0 branch's size (corners aligned) and compared with ``label[::8, ::8]``.
    """
    label8 = labels[:, ::8, ::8]
    size = output.fused.shape[-2:]
    terms = [("fused", output.fused, label8)]
    for scale, logits in zip(scales, output.per_scale):
        stride = 8 / scale
        if stride == int(stride):  # 1.0: label[::8], 0.5: label[::16]
            target = labels[:, :: int(stride), :: int(stride)]
            terms.append((f"x{scale:g}", logits, target))
        else:  # 0.75: the logits go up to the 1.0 size
            terms.append((f"x{scale:g}", resize_bilinear(logits, (size[0], size[1])), label8))
    for name, logits, target in terms:
        if logits.shape[-2:] != target.shape[-2:]:
            raise ValueError(
                f"the {name} logits are {tuple(logits.shape[-2:])} but the labels subsampled to "
                f"them are {tuple(target.shape[-2:])}: use a crop size of the form 8k + 1 (321)"
            )
    return terms


def nearest(labels: torch.Tensor, size: Sequence[int]) -> torch.Tensor:
    """``(B, H, W)`` labels resized by nearest neighbour to ``size`` (255 stays 255)."""
    resized = F.interpolate(labels[:, None].float(), size=tuple(size), mode="nearest")
    return resized[:, 0].long()


def branch_losses(output: Any, labels: torch.Tensor, config: Config, scales: Sequence[float]):
    """The loss terms by name: ``(B,)`` per image (``caffe``) or batch scalars (``nearest``).

    With MSC, the release's four terms (:func:`release_targets`) or the port's (every branch
    and the fusion against nearest-resized labels); without, the network's logits alone.
    """
    ignore = config.ignore_index
    if config.loss == "caffe":
        if not isinstance(output, MultiScaleOutput):
            return {"logits": per_image_ce(output, labels[:, ::8, ::8], ignore)}
        return {
            name: per_image_ce(z, target, ignore)
            for name, z, target in release_targets(output, scales, labels)
        }
    if not isinstance(output, MultiScaleOutput):
        return {"logits": F.cross_entropy(output.float(), nearest(labels, output.shape[-2:]),
                                          ignore_index=ignore)}  # fmt: skip
    named = [("fused", output.fused)] + [(f"x{s:g}", z) for s, z in zip(scales, output.per_scale)]
    return {
        name: F.cross_entropy(z.float(), nearest(labels, z.shape[-2:]), ignore_index=ignore)
        for name, z in named
    }


# -- model and optimisation ------------------------------------------------------------------------


def build_model(config: Config) -> nn.Module:
    """The network with its initialisation, class names and test protocol (the family's, with
    the training mean), and what it has seen: the initialisation's lineage plus this run."""
    if config.model == "deeplab_v2_resnet101" and list(config.blocks) != [3, 4, 23, 3]:
        model: nn.Module = DeepLabV2(num_classes=config.num_classes, blocks=tuple(config.blocks))
    else:
        model = get_model(config.model, pretrained=config.init, num_classes=config.num_classes)
    init = model.pretrained_info
    model.class_names = config.names()
    model.pretrained_info = PretrainedInfo(
        source="examples/train.py",
        classes=model.class_names,
        protocol=replace(model.default_protocol, mean_bgr=tuple(config.mean_bgr)),
        lineage=(init.lineage if init is not None else ()) + (f"{config.dataset} (this run)",),
    )
    return model


def param_groups(model: nn.Module, config: Config) -> list[dict]:
    """Backbone (and VGG fc6/fc7) at ``lr``, the classifier's weights at 10x, its biases at 20x
    without weight decay (the release's ``lr_mult``/``decay_mult``)."""
    classifier = [
        (n, p)
        for n, p in model.named_parameters()
        if p.requires_grad and (n.startswith("aspp.convs.") or ".fc8." in n)
    ]
    ids = {id(p) for _, p in classifier}
    rest = [p for p in model.parameters() if p.requires_grad and id(p) not in ids]
    weights = [p for n, p in classifier if n.endswith("weight")]
    biases = [p for n, p in classifier if n.endswith("bias")]
    return [
        {"params": rest, "lr": config.lr, "lr_mult": 1.0, "weight_decay": config.weight_decay},
        {
            "params": weights,
            "lr": config.lr * 10,
            "lr_mult": 10.0,
            "weight_decay": config.weight_decay,
        },
        {"params": biases, "lr": config.lr * 20, "lr_mult": 20.0, "weight_decay": 0.0},
    ]


def poly_lr(config: Config, iteration: int) -> float:
    """``lr * (1 - iteration / max_iter) ** power`` (Caffe's "poly" policy)."""
    return config.lr * (1 - iteration / config.max_iter) ** config.power


def checksum(model: nn.Module) -> str:
    digest = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()


def all_finite(model: nn.Module) -> bool:
    tensors = model.state_dict().values()
    return all(torch.isfinite(t).all() for t in tensors if t.is_floating_point())


# -- one run ------------------------------------------------------------------------------------


@dataclass
class Run:
    """What the loop needs: settings, places, model, optimiser, data and the ranks."""

    config: Config
    out: Path
    model: nn.Module
    net: nn.Module
    optimizer: torch.optim.Optimizer
    train_set: TrainSet
    val_set: Any
    device: torch.device
    ranks: Ranks = Ranks()
    last_checkpoint: Optional[int] = None
    logger: Any = None

    @property
    def rank(self) -> int:
        return self.ranks.rank

    @property
    def world(self) -> int:
        return self.ranks.world

    @property
    def scales(self) -> tuple[float, ...]:
        return getattr(self.net.module if self.world > 1 else self.net, "scales", (1.0,))


def train_step(run: Run, iteration: int) -> dict[str, float]:
    """One SGD step (all accumulation micro-batches); returns the losses for the log.

    Raises:
        NonFiniteLossError: the loss or a gradient is not finite (unless ``skip_nonfinite``,
            which skips the step).
    """
    config = run.config
    lr = poly_lr(config, iteration)
    for group in run.optimizer.param_groups:
        group["lr"] = lr * group["lr_mult"]
    run.optimizer.zero_grad(set_to_none=True)
    per_rank_images = config.batch_size // run.world
    sums: dict[str, float] = {}
    for micro in range(config.accumulate):
        keys = batch_keys(len(run.train_set), config, iteration, micro, run.rank, run.world)
        x, y = (torch.stack(t).to(run.device) for t in zip(*(run.train_set[k] for k in keys)))
        with torch.autocast(run.device.type, dtype=torch.bfloat16, enabled=config.amp):
            output = run.net(x)
        terms = branch_losses(output, y, config, run.scales)
        if config.loss == "caffe":  # images are averaged over the whole (global) batch
            loss = sum(t.sum() for t in terms.values()) / per_rank_images
        else:
            loss = sum(terms.values()) / config.accumulate
        loss.backward()
        for name, value in terms.items():
            share = (
                value.detach().sum() / per_rank_images if config.loss == "caffe" else value.detach()
            )
            sums[name] = sums.get(name, 0.0) + float(share) / (
                1 if config.loss == "caffe" else config.accumulate
            )
    total = torch.tensor([sum(sums.values())], dtype=torch.float64)
    if run.world > 1:
        dist.all_reduce(total)
        total /= run.world
    grads_finite = all(
        torch.isfinite(p.grad).all() for p in run.model.parameters() if p.grad is not None
    )
    if not (math.isfinite(float(total)) and grads_finite):
        what = "loss" if not math.isfinite(float(total)) else "gradient"
        if not config.skip_nonfinite:
            last = (
                f"the last good checkpoint is {run.out / 'checkpoint.safetensors'} "
                f"(iteration {run.last_checkpoint}; --resume continues from it)"
                if run.last_checkpoint
                else "no checkpoint was written yet"
            )
            raise NonFiniteLossError(
                f"iteration {iteration + 1}: the {what} is not finite (loss {float(total)}); "
                f"stopping: {last}. Lower the learning rate or check the initialisation, or set "
                "skip_nonfinite to skip such steps"
            )
        run.optimizer.zero_grad(set_to_none=True)
        return {"loss": float(total), "lr": lr, "skipped": 1.0}
    run.optimizer.step()
    return {"loss": float(total), "lr": lr, **{f"loss/{k}": v for k, v in sums.items()}}


def save_checkpoint(run: Run, done: int) -> None:
    """Model and optimiser state after ``done`` iterations (rank 0; never non-finite weights)."""
    if not all_finite(run.model):
        raise NonFiniteLossError(f"iteration {done}: the weights are not finite; nothing written")
    if run.rank == 0:
        save_weights(run.model, run.out / "checkpoint.safetensors", force=True, source="train.py")
        state = {
            "model": run.model.state_dict(),
            "optimizer": run.optimizer.state_dict(),
            "iteration": done,
            "rng": {"torch": torch.get_rng_state(), "python": random.getstate()},
            "config": asdict(run.config),
        }
        atomic_write(run.out / "checkpoint.pt", lambda tmp: torch.save(state, tmp), force=True)
    run.last_checkpoint = done


def load_checkpoint(run: Run) -> int:
    """Restore a run from ``<out>/checkpoint.pt``; returns the iteration to continue at."""
    state = torch.load(run.out / "checkpoint.pt", weights_only=False)
    run.model.load_state_dict(state["model"])
    run.optimizer.load_state_dict(state["optimizer"])
    torch.set_rng_state(state["rng"]["torch"])
    random.setstate(state["rng"]["python"])
    run.last_checkpoint = state["iteration"]
    return state["iteration"]


def validate(run: Run) -> dict:
    """Scores on the validation set with the library's evaluation (the release's protocol,
    single scale), sharded across the ranks; the model returns to training mode."""
    segmenter = Segmenter(run.model, scales=(), device=run.device)
    scores = evaluate(segmenter, run.val_set, progress=False, crf_workers=0)
    run.model.train()
    return scores


def train_steps(run: Run, start: int, end: int) -> Iterator[tuple[int, dict]]:
    """Iterations ``start`` .. ``end - 1``, with checkpoints and validation on schedule."""
    config = run.config
    for iteration in range(start, end):
        record = train_step(run, iteration)
        done = iteration + 1
        stopping = done == end and end < config.max_iter
        if (done % config.checkpoint_every == 0 or stopping) and done < config.max_iter:
            save_checkpoint(run, done)
        if done % config.val_every == 0 and done < config.max_iter:
            record["val/mean_iou"] = validate(run)["mean_iou"]
        yield done, record


class Logger:
    """JSON lines in ``<out>/log.jsonl`` and, when tensorboard is installed, its scalars."""

    def __init__(self, out: Path) -> None:
        self.path = out / "log.jsonl"
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:  # tensorboard is optional
            self.writer = None
        else:
            self.writer = SummaryWriter(str(out / "tensorboard"))

    def log(self, iteration: int, record: dict) -> None:
        with open(self.path, "a", encoding="utf-8") as handle:
            handle.write(json.dumps({"iteration": iteration, **record}) + "\n")
        if self.writer is not None:
            for key, value in record.items():
                if value is not None:
                    self.writer.add_scalar(key if "/" in key else f"train/{key}", value, iteration)

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


def setup(config: Config, data_root: str, out: Path) -> Run:
    """Process group (under ``torchrun``), device, model, optimiser and data of a run."""
    ranks = start()
    if config.batch_size % (ranks.world * config.accumulate):
        raise ValueError(
            f"batch_size {config.batch_size} is not divisible by {ranks.world} ranks x "
            f"{config.accumulate} accumulation steps"
        )
    device = ranks.device(None)  # this rank's GPU, else the CPU
    torch.manual_seed(config.seed)
    random.seed(config.seed)
    model = build_model(config).to(device).train()
    groups = param_groups(model, config)
    optimizer = torch.optim.SGD(groups, lr=config.lr, momentum=config.momentum)
    net: nn.Module = MultiScale(model) if config.msc else model
    if ranks.distributed:
        net = nn.parallel.DistributedDataParallel(
            net, device_ids=[device] if device.type == "cuda" else None
        )
    out.mkdir(parents=True, exist_ok=True)
    return Run(
        config=config,
        out=out,
        model=model,
        net=net,
        optimizer=optimizer,
        train_set=TrainSet(dataset(config, data_root, config.split), config),
        val_set=dataset(config, data_root, config.val_split, config.val_limit),
        device=device,
        ranks=ranks,
        logger=Logger(out) if ranks.rank == 0 else None,
    )


def train(
    config: Config, data_root: str, out: Path, resume: bool = False, stop_at: Optional[int] = None
) -> dict:
    """Run (or resume) training; returns the final metrics (on rank 0; {} elsewhere).

    ``stop_at`` ends the run early after that many iterations with a checkpoint (e.g. to fit a
    job's time limit); ``resume`` continues it with an identical result.
    """
    run = setup(config, data_root, out)
    try:
        start = load_checkpoint(run) if resume else 0
        end = config.max_iter if stop_at is None else min(stop_at, config.max_iter)
        history = []
        with tqdm(initial=start, total=config.max_iter, desc="train", unit="it",
                  disable=run.rank != 0) as bar:  # fmt: skip
            for done, record in train_steps(run, start, end):
                history.append({"iteration": done, **record})
                if run.logger is not None:
                    run.logger.log(done, record)
                bar.update(1)
                bar.set_postfix(loss=f"{record['loss']:.3f}")
        if end < config.max_iter:
            return {}
        if not all_finite(run.model):
            raise NonFiniteLossError("the final weights are not finite; nothing written")
        scores = validate(run)
        sums = [checksum(run.model)]
        if run.world > 1:
            gathered: list = [None] * run.world
            dist.all_gather_object(gathered, sums[0])
            sums = gathered
        if run.rank != 0:
            return {}
        save_weights(run.model, out / "final.safetensors", force=True, source="train.py")
        result = {
            "iterations": config.max_iter,
            "val": scores,
            "history": history,
            "rank_checksums": sums,
            "config": asdict(config),
        }
        text = json.dumps(result, indent=2)
        atomic_write(out / "metrics.json", lambda tmp: Path(tmp).write_text(text), force=True)
        run.logger.log(config.max_iter, {"val/mean_iou": scores["mean_iou"]})
        return result
    finally:
        if run.logger is not None:
            run.logger.close()
        stop(run.ranks)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", help="JSON config (examples/configs/*.json)")
    parser.add_argument("--data", required=True, help="dataset root")
    parser.add_argument("--out", required=True, type=Path, help="run directory")
    parser.add_argument("--resume", action="store_true", help="continue from <out>/checkpoint.pt")
    parser.add_argument("--stop-at", type=int, help="stop (with a checkpoint) after N iterations")
    parser.add_argument("--max-iter", type=int, dest="max_iter")
    parser.add_argument("--lr", type=float)
    parser.add_argument("--batch-size", type=int, dest="batch_size")
    parser.add_argument("--accumulate", type=int)
    parser.add_argument("--init", help="registry name of the network or a weights file")
    parser.add_argument("--model", choices=list_models())
    parser.add_argument("--amp", action="store_true", default=None, help="bfloat16 autocast")
    args = parser.parse_args()
    names = ("max_iter", "lr", "batch_size", "accumulate", "amp", "init", "model")
    config = Config.load(args.config, {k: getattr(args, k) for k in names})
    if (args.out / "final.safetensors").exists() and not args.resume:
        parser.error(f"{args.out} already holds a finished run; choose another --out")
    try:
        result = train(config, args.data, args.out, resume=args.resume, stop_at=args.stop_at)
    except NonFiniteLossError as error:
        raise SystemExit(f"train.py: {error}") from None
    if result:
        miou = result["val"]["mean_iou"]
        shown = "n/a" if miou is None else f"{100 * miou:.2f}%"
        print(f"final mIoU {shown} -> {args.out}/final.safetensors")


if __name__ == "__main__":
    main()
