"""Before/after picture of the dense CRF on a real photograph.

Takes a photo (scikit-image's ``chelsea`` by default, or ``--image PATH``), makes a coarse class
prediction at output stride 8 like a DeepLab network's (colour clustering, bilinearly upsampled:
see :func:`deeplabv2.crf.synthetic.coarse_probs`), refines it with :class:`deeplabv2.crf.DenseCRF`
at DeepLab v2's settings and writes ``photo | coarse labels | CRF labels`` side by side.

    python examples/crf_demo.py --out docs/images/crf_demo.png [--image PATH] [--classes 5]

Needs Pillow (``pip install pillow``).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from PIL import Image
from skimage import data as skdata

from deeplabv2 import atomic_write
from deeplabv2.crf import DenseCRF
from deeplabv2.crf.synthetic import coarse_probs
from deeplabv2.data.classes import voc_palette


def colourize(labels: np.ndarray) -> np.ndarray:
    """``(H, W)`` int labels -> ``(H, W, 3)`` uint8 with the VOC palette (class 0 black)."""
    return voc_palette()[labels + 1]  # skip the background's black so every class is visible


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--image", type=Path, help="an RGB photo (default: scikit-image chelsea)")
    parser.add_argument("--out", type=Path, required=True, help="PNG to write")
    parser.add_argument("--classes", type=int, default=5)
    parser.add_argument("--force", action="store_true", help="overwrite an existing --out")
    args = parser.parse_args()
    if args.out.exists() and not args.force:
        parser.error(f"{args.out} exists; pass --force to overwrite it")

    if args.image:
        photo = np.asarray(Image.open(args.image).convert("RGB"))
    else:
        photo = skdata.chelsea()
    photo = np.ascontiguousarray(photo)
    probs = coarse_probs(photo, args.classes, temperature=20.0, noise=0.5)
    refined = DenseCRF()(photo, probs)
    before, after = probs.argmax(0), refined.argmax(0)
    print(f"{(before != after).mean():.1%} of the pixels changed label")

    gap = np.full((photo.shape[0], 8, 3), 255, np.uint8)
    panel = np.concatenate([photo, gap, colourize(before), gap, colourize(after)], axis=1)
    atomic_write(args.out, lambda tmp: Image.fromarray(panel).save(tmp, format="PNG"), force=True)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
