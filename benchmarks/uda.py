"""Time per Cityscapes image under the domain adaptation works' protocol (``UDA_PROTOCOL``).

One real photograph (scikit-image's astronaut) stretched to Cityscapes' 2048x1024 goes through:

- **their pipeline**, written here from what AdaptSegNet's ``evaluate_cityscapes.py`` computes
  (PIL bicubic resize to 1024x512, RGB -> BGR minus their mean, one forward pass, the main head's
  logits upsampled bilinearly with ``align_corners=True`` to 2048x1024, arg-max), on the same
  network: the reference of every ratio;
- ``Segmenter(model).predict(image)`` under the protocol the weights carry (``UDA_PROTOCOL``),
  which adds the library's checks and its device pipeline;
- the network alone at 1024x512: ``model(x)`` (the main head) and ``model.forward_levels(x)``
  (both heads, as the training loss uses them).

The network is DeepLab v2 ResNet-101 with AdaptSegNet's heads (``aux_head=True``,
``head_branches=2``, 19 classes) or ADVENT's (``--dialect advent``: four branches), random
weights (speed does not depend on them). Each figure is the median of ``--runs`` passes after
one warm-up pass.

    python benchmarks/uda.py [--runs 3] [--dialect adaptsegnet|advent] [--device cpu|cuda]
"""

from __future__ import annotations

import argparse
import platform
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F
from model import median_seconds  # benchmarks/model.py
from PIL import Image
from skimage import data as skdata

from deeplabv2 import Segmenter
from deeplabv2.models import DeepLabV2
from deeplabv2.protocol import UDA_MEAN_BGR, UDA_PROTOCOL, PretrainedInfo

_HEADS = {"adaptsegnet": {"aux_head": True, "head_branches": 2}, "advent": {"aux_head": True}}


def cityscapes_photo() -> np.ndarray:
    """(1024, 2048, 3) uint8: a real photograph at Cityscapes' size."""
    return np.asarray(Image.fromarray(skdata.astronaut()).resize((2048, 1024), Image.BICUBIC))


def their_pipeline(model: DeepLabV2, device: torch.device) -> Callable[[np.ndarray], np.ndarray]:
    """The UDA works' evaluation of one image, on ``model``: (H, W, 3) uint8 -> (H, W) labels."""
    mean = torch.tensor(UDA_MEAN_BGR, device=device).view(1, 3, 1, 1)

    def run(image: np.ndarray) -> np.ndarray:
        small = Image.fromarray(image).resize(UDA_PROTOCOL.resize_to, Image.BICUBIC)
        bgr = np.asarray(small, np.float32)[:, :, ::-1].transpose(2, 0, 1).copy()
        x = torch.from_numpy(bgr).to(device)[None] - mean
        logits = model(x)
        up = F.interpolate(logits, image.shape[:2], mode="bilinear", align_corners=True)
        return up.argmax(1)[0].cpu().numpy()

    return run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--dialect", choices=sorted(_HEADS), default="adaptsegnet")
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    device = torch.device(args.device)
    torch.manual_seed(0)
    model = DeepLabV2(num_classes=19, **_HEADS[args.dialect]).to(device).eval()
    model.pretrained_info = PretrainedInfo(protocol=UDA_PROTOCOL)
    image = cityscapes_photo()
    theirs = their_pipeline(model, device)
    segmenter = Segmenter(model, device=device)
    x = torch.randn(1, 3, 512, 1024, device=device) * 50
    with torch.inference_mode():
        agree = float((segmenter.predict(image).labels.numpy() == theirs(image)).mean())
    rows = [
        ("their pipeline (reference)", theirs, image),
        ("Segmenter.predict", segmenter.predict, image),
        ("network: model(x), 1024x512", model, x),
        ("network: forward_levels(x), 1024x512", model.forward_levels, x),
    ]
    times = [
        (label, 1000 * median_seconds(run, given, device, args.runs, warmup=1))
        for label, run, given in rows
    ]
    where = torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor()
    print(
        f"{args.dialect} heads, 2048x1024 image, {device} ({where or 'cpu'}), torch "
        f"{torch.__version__}, {torch.get_num_threads()} threads, median of {args.runs}; "
        f"labels equal to the reference's on {100 * agree:.2f}% of pixels\n"
    )
    print("| pipeline | ms / image | ratio to the reference |\n|---|---:|---:|")
    for label, ms in times:
        print(f"| {label} | {ms:.0f} | {ms / times[0][1]:.2f} |")


if __name__ == "__main__":
    main()
