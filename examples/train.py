"""Train DeepLab v2 ResNet-101 with the release's recipe (optional example, not part of the API).

One CPU, one GPU or many (``torchrun``, DistributedDataParallel: NCCL on GPUs, gloo on CPUs):

    python examples/train.py --config examples/configs/voc12.json --data VOCdevkit/VOC2012 \
        --out runs/voc12
    torchrun --nproc_per_node 4 examples/train.py --config examples/configs/voc12.json ...

The recipe (DeepLab v2 release, ``solver.prototxt`` / ``train.prototxt``): initialise from the
MS-COCO-pretrained ``coco-init`` weights, SGD with momentum 0.9 and weight decay 5e-4, poly
learning rate ``lr * (1 - it / max_iter) ** 0.9`` from 2.5e-4 (backbone), x10 for the ASPP
weights and x20 for the ASPP biases (no decay on them), 20,000 iterations of batch 10 (gradient
accumulation when memory is short), random scale 0.5-1.5, random 321x321 crop padded with the
mean (labels with 255), horizontal flip, frozen BatchNorm, and the MSC loss: the sum of the
cross-entropies of the 1.0, 0.75 and 0.5 branches and of their max fusion, each against labels
resized by nearest neighbour to its size, 255 ignored.

Every ``checkpoint_every`` iterations ``<out>/checkpoint.safetensors`` (model) and
``<out>/checkpoint.pt`` (optimizer, iteration, RNG) are written atomically; ``--resume``
continues exactly. The final model is ``<out>/final.safetensors``, loadable with
``deeplab_v2_resnet101(pretrained=path)``. Every ``val_every`` iterations (and at the end) the
model is evaluated with ``deeplabv2.Segmenter`` and ``ConfusionMatrix`` (merged across ranks).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import random
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Optional

import numpy as np
import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn

from deeplabv2 import ConfusionMatrix, MultiScale, Segmenter
from deeplabv2.data import VOCSegmentation, to_caffe_input
from deeplabv2.models import DeepLabV2, deeplab_v2_resnet101, save_weights
from deeplabv2.weights import atomic_write


@dataclass
class Config:
    """Training settings; a JSON config file sets any of them."""

    split: str = "trainaug"
    val_split: str = "val"
    num_classes: int = 21
    init: Optional[str] = "coco-init"  # registry name, file, or null for random
    blocks: list[int] = field(default_factory=lambda: [3, 4, 23, 3])
    lr: float = 2.5e-4
    momentum: float = 0.9
    weight_decay: float = 5e-4
    power: float = 0.9
    max_iter: int = 20000
    batch_size: int = 10  # per step, over all ranks and accumulation steps
    accumulate: int = 1
    crop_size: int = 321
    scale_range: list[float] = field(default_factory=lambda: [0.5, 1.5])
    flip: bool = True
    msc: bool = True
    amp: bool = False
    workers: int = 2
    seed: int = 0
    checkpoint_every: int = 1000
    val_every: int = 2000
    val_limit: Optional[int] = None

    @classmethod
    def load(cls, path: Optional[str], overrides: dict) -> Config:
        values = json.loads(Path(path).read_text()) if path else {}
        values.update({k: v for k, v in overrides.items() if v is not None})
        known = {f.name for f in fields(cls)}
        unknown = set(values) - known
        if unknown:
            raise ValueError(f"unknown config keys {sorted(unknown)}; known: {sorted(known)}")
        return cls(**values)


# -- data -----------------------------------------------------------------------------------------


class TrainSet(torch.utils.data.Dataset):
    """Augmented (input, label) pairs; ``dataset[(index, seed)]`` is deterministic in ``seed``."""

    def __init__(self, base: VOCSegmentation, config: Config) -> None:
        self.base, self.config = base, config

    def __len__(self) -> int:
        return len(self.base)

    def __getitem__(self, key: tuple[int, int]) -> tuple[torch.Tensor, torch.Tensor]:
        index, seed = key
        rng = np.random.default_rng(seed)
        image, label, _ = self.base[index]
        x = to_caffe_input(image)  # (3, H, W) BGR minus mean
        y = torch.from_numpy(label)
        low, high = self.config.scale_range
        scale = rng.uniform(low, high)
        h, w = y.shape
        size = (max(1, round(h * scale)), max(1, round(w * scale)))
        x = F.interpolate(x[None], size=size, mode="bilinear", align_corners=False)[0]
        y = F.interpolate(y[None, None].float(), size=size, mode="nearest")[0, 0].long()
        crop = self.config.crop_size
        pad_h, pad_w = max(0, crop - size[0]), max(0, crop - size[1])
        if pad_h or pad_w:  # pad with the mean (zero after subtraction), labels with 255
            x = F.pad(x, (0, pad_w, 0, pad_h), value=0.0)
            y = F.pad(y, (0, pad_w, 0, pad_h), value=255)
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


def resize_labels(labels: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Nearest-neighbour resize of ``(B, H, W)`` labels (255 stays 255)."""
    if tuple(labels.shape[-2:]) == tuple(size):
        return labels
    return F.interpolate(labels[:, None].float(), size=size, mode="nearest")[:, 0].long()


# -- model and optimisation ------------------------------------------------------------------------


def param_groups(model: DeepLabV2, config: Config) -> list[dict]:
    """Backbone at ``lr``, ASPP weights at 10x, ASPP biases at 20x without weight decay."""
    backbone = [p for p in model.backbone.parameters() if p.requires_grad]
    aspp_w = [p for n, p in model.aspp.named_parameters() if n.endswith("weight")]
    aspp_b = [p for n, p in model.aspp.named_parameters() if n.endswith("bias")]
    return [
        {"params": backbone, "lr": config.lr, "lr_mult": 1.0, "weight_decay": config.weight_decay},
        {
            "params": aspp_w,
            "lr": config.lr * 10,
            "lr_mult": 10.0,
            "weight_decay": config.weight_decay,
        },
        {"params": aspp_b, "lr": config.lr * 20, "lr_mult": 20.0, "weight_decay": 0.0},
    ]


def poly_lr(config: Config, iteration: int) -> float:
    """``lr * (1 - iteration / max_iter) ** power`` (Caffe's "poly" policy)."""
    return config.lr * (1 - iteration / config.max_iter) ** config.power


def msc_loss(output, labels: torch.Tensor) -> torch.Tensor:
    """Sum of the cross-entropies of every MSC branch and of the fused logits."""
    logits = [*output.per_scale, output.fused] if hasattr(output, "fused") else [output]
    return sum(
        F.cross_entropy(z.float(), resize_labels(labels, z.shape[-2:]), ignore_index=255)
        for z in logits
    )


def build_model(config: Config) -> DeepLabV2:
    if config.init is None or list(config.blocks) != [3, 4, 23, 3]:
        return DeepLabV2(num_classes=config.num_classes, blocks=tuple(config.blocks))
    return deeplab_v2_resnet101(pretrained=config.init, num_classes=config.num_classes)


def checksum(model: nn.Module) -> str:
    digest = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()


# -- the loop -------------------------------------------------------------------------------


def _atomic_torch_save(obj, path: Path) -> None:
    atomic_write(path, lambda tmp: torch.save(obj, tmp), force=True)


def _rng_state() -> dict:
    return {"torch": torch.get_rng_state(), "python": random.getstate()}


def evaluate(model: DeepLabV2, data: VOCSegmentation, device, rank: int, world: int) -> dict:
    """mIoU of ``model`` on ``data`` (single scale), images split across ranks."""
    segmenter = Segmenter(model, scales=(), device=device)
    matrix = ConfusionMatrix(model.num_classes)
    for index in range(rank, len(data), world):
        image, label, _ = data[index]
        matrix.update(segmenter.predict(image).labels, label)
    if world > 1:
        matrix.all_reduce()
    model.train()
    return matrix.scores(data.class_names if model.num_classes == 21 else None)


def train(
    config: Config, data_root: str, out: Path, resume: bool = False, stop_at: Optional[int] = None
) -> dict:
    """Run (or resume) training; returns the final metrics (on rank 0; {} elsewhere).

    ``stop_at`` ends the run early after that many iterations with a checkpoint (e.g. to fit a
    job's time limit); ``resume`` continues it with an identical result.
    """
    distributed = "WORLD_SIZE" in os.environ and int(os.environ["WORLD_SIZE"]) > 1
    if distributed:
        backend = "nccl" if torch.cuda.is_available() else "gloo"
        dist.init_process_group(backend)
    rank = dist.get_rank() if distributed else 0
    world = dist.get_world_size() if distributed else 1
    if config.batch_size % (world * config.accumulate):
        raise ValueError(
            f"batch_size {config.batch_size} is not divisible by {world} ranks x "
            f"{config.accumulate} accumulation steps"
        )
    if torch.cuda.is_available():
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)))
        torch.cuda.set_device(device)
    else:
        device = torch.device("cpu")
    torch.manual_seed(config.seed)
    random.seed(config.seed)

    model = build_model(config).to(device).train()
    optimizer = torch.optim.SGD(param_groups(model, config), lr=config.lr, momentum=config.momentum)
    start = 0
    out.mkdir(parents=True, exist_ok=True)
    if resume:
        state = torch.load(out / "checkpoint.pt", weights_only=False)
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        torch.set_rng_state(state["rng"]["torch"])
        random.setstate(state["rng"]["python"])
        start = state["iteration"]
    net: nn.Module = MultiScale(model) if config.msc else model
    if distributed:
        net = nn.parallel.DistributedDataParallel(
            net, device_ids=[device] if device.type == "cuda" else None
        )

    train_set = TrainSet(VOCSegmentation(data_root, config.split), config)
    val_set = VOCSegmentation(data_root, config.val_split, limit=config.val_limit)
    writer = _summary_writer(out) if rank == 0 else None
    progress = _progress(start, config.max_iter, rank)
    history = []
    end = config.max_iter if stop_at is None else min(stop_at, config.max_iter)
    for iteration in range(start, end):
        lr = poly_lr(config, iteration)
        for group in optimizer.param_groups:
            group["lr"] = lr * group["lr_mult"]
        optimizer.zero_grad(set_to_none=True)
        total = 0.0
        for micro in range(config.accumulate):
            keys = batch_keys(len(train_set), config, iteration, micro, rank, world)
            x, y = (torch.stack(t).to(device) for t in zip(*(train_set[k] for k in keys)))
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=config.amp):
                loss = msc_loss(net(x), y) / config.accumulate
            loss.backward()
            total += loss.item()
        optimizer.step()
        history.append({"iteration": iteration + 1, "loss": total, "lr": lr})
        if writer is not None:
            writer.add_scalar("train/loss", total, iteration + 1)
            writer.add_scalar("train/lr", lr, iteration + 1)
        progress.update(1)
        progress.set_postfix(loss=f"{total:.3f}")
        done = iteration + 1
        stopping = done == end and end < config.max_iter
        if (
            (done % config.checkpoint_every == 0 or stopping)
            and done < config.max_iter
            and rank == 0
        ):
            save_weights(model, out / "checkpoint.safetensors", force=True, source="train.py")
            _atomic_torch_save(
                {
                    "model": model.state_dict(),
                    "optimizer": optimizer.state_dict(),
                    "iteration": done,
                    "rng": _rng_state(),
                    "config": asdict(config),
                },
                out / "checkpoint.pt",
            )
        if done % config.val_every == 0 and done < config.max_iter:
            scores = evaluate(model, val_set, device, rank, world)
            if writer is not None:
                writer.add_scalar("val/mean_iou", scores["mean_iou"], done)
    progress.close()
    if end < config.max_iter:
        if distributed:
            dist.barrier()
            dist.destroy_process_group()
        return {}

    scores = evaluate(model, val_set, device, rank, world)
    sums = [checksum(model)]
    if distributed:
        gathered: list = [None] * world
        dist.all_gather_object(gathered, sums[0])
        sums = gathered
    result = {}
    if rank == 0:
        save_weights(model, out / "final.safetensors", force=True, source="train.py")
        result = {
            "iterations": config.max_iter,
            "val": scores,
            "history": history,
            "rank_checksums": sums,
            "config": asdict(config),
        }
        (out / "metrics.json").write_text(json.dumps(result, indent=2))
    if writer is not None:
        writer.close()
    if distributed:
        dist.barrier()
        dist.destroy_process_group()
    return result


def _summary_writer(out: Path):
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:  # tensorboard is optional
        return None
    return SummaryWriter(str(out / "tensorboard"))


def _progress(start: int, total: int, rank: int):
    from tqdm import tqdm

    return tqdm(initial=start, total=total, desc="train", unit="it", disable=rank != 0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", help="JSON config (examples/configs/*.json)")
    parser.add_argument("--data", required=True, help="VOC-format dataset root")
    parser.add_argument("--out", required=True, type=Path, help="run directory")
    parser.add_argument("--resume", action="store_true", help="continue from <out>/checkpoint.pt")
    parser.add_argument("--stop-at", type=int, help="stop (with a checkpoint) after N iterations")
    parser.add_argument("--max-iter", type=int, dest="max_iter")
    parser.add_argument("--lr", type=float)
    parser.add_argument("--batch-size", type=int, dest="batch_size")
    parser.add_argument("--accumulate", type=int)
    parser.add_argument("--amp", action="store_true", default=None, help="bfloat16 autocast")
    args = parser.parse_args()
    overrides = {k: getattr(args, k) for k in ("max_iter", "lr", "batch_size", "accumulate", "amp")}
    config = Config.load(args.config, overrides)
    if (args.out / "final.safetensors").exists() and not args.resume:
        parser.error(f"{args.out} already holds a finished run; choose another --out")
    result = train(config, args.data, args.out, resume=args.resume, stop_at=args.stop_at)
    if result:
        print(f"final mIoU {100 * result['val']['mean_iou']:.2f} -> {args.out}/final.safetensors")


if __name__ == "__main__":
    main()
