"""Smoke test of an installed wheel (run outside the checkout, by .ci/check_dist).

Usage: python smoke.py CHECKOUT  -- CHECKOUT holds hubconf.py for torch.hub.load(source="local").
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import torch
from PIL import Image

import deeplabv2


def cli(*args: str) -> str:
    """Run the installed ``deeplabv2`` console script (the wheel's entry point)."""
    script = Path(sys.executable).with_name("deeplabv2")
    result = subprocess.run([script, *args], capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise SystemExit(f"deeplabv2 {' '.join(args)} failed:\n{result.stdout}\n{result.stderr}")
    return result.stdout


def main(checkout: str) -> None:
    installed = Path(deeplabv2.__file__).resolve()
    assert Path(checkout).resolve() not in installed.parents, f"imported the checkout: {installed}"
    assert cli("--version").strip() == f"deeplabv2 {deeplabv2.__version__}"
    assert "deeplab_v2_resnet101.voc12" in cli("weights")
    assert cli("sample", "samples").strip() == str(Path("samples", "astronaut.jpg"))
    assert Path("samples/astronaut.jpg").read_bytes() == deeplabv2.data.sample_image().read_bytes()

    torch.manual_seed(0)
    model = deeplabv2.deeplab_v2_resnet101(num_classes=21)
    model.save_pretrained("generated")
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 256, (65, 81, 3), dtype=np.uint8)).save("photo.png")
    cli("predict", "photo.png", "--out", "seg", "--weights", "generated/model.safetensors",
        "--single-scale", "--quiet")  # fmt: skip
    with Image.open("seg/photo.png") as labels:
        assert labels.size == (81, 65) and labels.mode == "P", (labels.size, labels.mode)

    hub = torch.hub.load(checkout, "deeplab_v2_resnet101", source="local", num_classes=5)
    assert isinstance(hub, deeplabv2.models.DeepLabV2) and hub.num_classes == 5
    print(f"smoke test passed: deeplabv2 {deeplabv2.__version__} from {installed.parent}")


if __name__ == "__main__":
    main(sys.argv[1])
