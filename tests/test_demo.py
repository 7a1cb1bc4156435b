"""The web demo: its segmentation step, the legend, the missing extra, and a real browser.

The browser test drives the system's Chromium headless through Playwright (marker ``browser``;
skipped where Chromium, Playwright or Gradio is missing). Set ``DEEPLABV2_DEMO_SCREENSHOT`` to
a path to keep its screenshot (docs/images/demo.png is made that way).
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from skimage import data as skdata

from deeplabv2.models import DeepLabV2

from .conftest import randomize_batchnorm

demo = pytest.importorskip("deeplabv2.demo")
CLASSES = ("background", "cat", "grass", "sofa")


@pytest.fixture(scope="module")
def model() -> DeepLabV2:
    torch.manual_seed(3)
    net = randomize_batchnorm(DeepLabV2(num_classes=4, blocks=(1, 1, 1, 1)), seed=3).eval()
    net.class_names = CLASSES
    return net


@pytest.fixture(scope="module")
def photo() -> np.ndarray:
    return np.ascontiguousarray(skdata.chelsea()[:130, :170])


def test_segment_gives_overlays_and_a_legend_of_present_classes(model, photo) -> None:
    out = demo.segment(model, photo, msc=False, crf=True, device="cpu")
    assert out["overlay"].shape == photo.shape and out["overlay"].dtype == np.uint8
    assert out["before"].shape == out["after"].shape == photo.shape
    assert np.array_equal(out["overlay"], out["after"])
    present = {CLASSES[v] for v in np.unique(out["labels"])}
    for name in CLASSES:
        assert (f">{name} <small>" in out["legend"]) == (name in present)
    plain = demo.segment(model, photo, msc=True, crf=False, device="cpu")
    assert plain["before"] is None and plain["after"] is None


def test_legend_orders_by_share_and_escapes_names() -> None:
    labels = np.array([[0, 1, 1, 1], [1, 1, 2, 2]])
    legend = demo.legend_html(labels, ("bg", "<b>cat</b>", "dog"))
    assert legend.index("&lt;b&gt;cat") < legend.index("dog") < legend.index("bg")
    assert "62.5%" in legend and "<b>cat" not in legend
    assert "class 7" in demo.legend_html(np.array([[7]]), ("bg",))


def test_missing_gradio_names_the_extra() -> None:
    code = (
        "import sys; sys.modules['gradio'] = None\n"
        "from deeplabv2.cli import main\n"
        "sys.exit(main(['demo']))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 1
    assert "pip install 'deeplabv2[demo]'" in done.stderr


def _chromium() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.browser
def test_demo_in_a_real_browser(model, photo, tmp_path: Path) -> None:
    chromium = _chromium()
    if chromium is None:
        pytest.skip("no Chromium on this machine (Debian: apt-get install chromium)")
    playwright = pytest.importorskip("playwright.sync_api", reason="needs playwright")
    upload = tmp_path / "cat.jpg"
    Image.fromarray(photo).save(upload)
    app = demo.build_demo([], models={"tiny test network": model})
    port = _free_port()
    app.launch(server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, quiet=True)
    try:
        with playwright.sync_playwright() as p:
            browser = p.chromium.launch(
                executable_path=chromium, headless=True, args=["--no-sandbox"]
            )
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            page.goto(f"http://127.0.0.1:{port}/", wait_until="networkidle")
            page.locator("input[type=file]").first.set_input_files(str(upload))
            page.get_by_label("dense CRF").check()
            page.locator("#segment").click()
            overlay = page.locator("#overlay img")
            overlay.wait_for(state="visible", timeout=60_000)
            assert overlay.get_attribute("src")
            legend = page.locator("#legend li.deeplabv2-class")
            legend.first.wait_for(timeout=30_000)
            names = legend.all_inner_texts()
            assert names and all(any(c in n for c in CLASSES) for n in names)
            page.locator("#after img").wait_for(state="visible", timeout=30_000)
            page.locator("#before img").wait_for(state="visible", timeout=30_000)
            shot = tmp_path / "demo.png"
            page.screenshot(path=str(shot), full_page=True)
            browser.close()
        assert shot.stat().st_size > 10_000
        keep = os.environ.get("DEEPLABV2_DEMO_SCREENSHOT")
        if keep:
            shutil.copy(shot, keep)
    finally:
        app.close()


@pytest.mark.parametrize(
    ("weights", "message"),
    [
        ("missing.safetensors", "no weights file at 'missing.safetensors'"),
        ("nowhere/voc.pth", "no weights file at 'nowhere/voc.pth'"),
        ("voc13", "unknown weights 'voc13'"),
        ("hf-hub:no-repo", "expected 'hf-hub:<owner>/<repo>[/<filename>]'"),
    ],
)
def test_weights_are_checked_at_start_up(weights, message, monkeypatch, capsys) -> None:
    """Not on the first click: the demo does not start with weights it cannot load."""
    gr = pytest.importorskip("gradio")
    launched = []
    monkeypatch.setattr(gr.Blocks, "launch", lambda self, **kwargs: launched.append(kwargs))
    from deeplabv2.cli import main

    assert main(["demo", "--weights", "voc12", "--weights", weights]) == 1
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1, err
    assert launched == []
    with pytest.raises((ValueError, FileNotFoundError), match="weights"):
        demo.build_demo([weights])


def test_good_weights_names_start_without_loading(monkeypatch, tmp_path) -> None:
    """Registry names and existing files pass the start-up check; nothing is loaded yet."""
    pytest.importorskip("gradio")

    def refuse(*args, **kwargs):
        raise AssertionError("weights were loaded at start-up")

    monkeypatch.setattr(demo, "load_model", refuse)
    (tmp_path / "mine.safetensors").write_bytes(b"not checked until chosen")
    app = demo.build_demo(["voc12", "deeplab_v2_vgg16.voc12", str(tmp_path / "mine.safetensors")])
    assert app is not None
