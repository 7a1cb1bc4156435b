"""A web demo (Gradio): upload or pick a photo, choose weights, MSC and the CRF, see the result.

``deeplabv2 demo`` starts it; ``build_demo(...)`` returns the ``gradio.Blocks`` app to launch or
embed. It shows the colour overlay, a legend of the classes present (with their palette colours)
and, with the CRF on, the overlays before and after it. Runs on the CPU (or ``device``). Needs
``pip install 'deeplabv2[demo]'``.
"""

from __future__ import annotations

import html
import os
import threading
from collections.abc import Mapping, Sequence
from typing import Any, Callable, Optional, Union

import numpy as np
import torch
from torch import nn

from ._files import check_readable
from .data.classes import overlay, voc_palette
from .models import load_model
from .protocol import protocol_of
from .segmenter import Segmenter
from .weights import find_weights, get_weights

__all__ = [
    "DEFAULT_WEIGHTS",
    "INSTALL_HINT",
    "build_demo",
    "check_weights",
    "example_photos",
    "legend_html",
    "segment",
]

INSTALL_HINT = "the demo needs Gradio: pip install 'deeplabv2[demo]'"
#: The weights offered by ``deeplabv2 demo`` when none are named.
DEFAULT_WEIGHTS = ("deeplab_v2_resnet101.voc12", "deeplab_v2_resnet101.cocostuff164k")


def require_gradio() -> Any:
    try:
        import gradio
    except ImportError as exc:
        raise ImportError(f"{INSTALL_HINT} ({exc})") from exc
    return gradio


def example_photos(directory: str) -> list[str]:
    """A few photographs from scikit-image (when installed) written as JPEGs into
    ``directory``, for the demo's examples; empty without scikit-image."""
    try:
        from skimage import data as skdata
    except ImportError:
        return []
    from PIL import Image

    paths = []
    for name in ("astronaut", "coffee", "chelsea", "rocket"):
        path = f"{directory}/{name}.jpg"
        Image.fromarray(getattr(skdata, name)()).save(path, quality=92)
        paths.append(path)
    return paths


def legend_html(labels: np.ndarray, class_names: Sequence[str]) -> str:
    """An HTML legend of the classes present in ``(H, W)`` labels, most frequent first, each
    with its palette colour and its share of the pixels."""
    values, counts = np.unique(np.asarray(labels), return_counts=True)
    palette = voc_palette()
    items = []
    for value, count in sorted(zip(values.tolist(), counts.tolist()), key=lambda vc: -vc[1]):
        name = class_names[value] if value < len(class_names) else f"class {value}"
        r, g, b = (int(c) for c in palette[value % 256])
        share = 100.0 * count / labels.size
        items.append(
            f'<li class="deeplabv2-class"><span style="display:inline-block;width:1em;'
            f"height:1em;margin-right:0.4em;vertical-align:middle;background:rgb({r},{g},{b})"
            f'"></span>{html.escape(name)} <small>({share:.1f}%)</small></li>'
        )
    return (
        '<ul class="deeplabv2-legend" style="list-style:none;padding:0">' + "".join(items) + "</ul>"
    )


def segment(
    model: nn.Module, image: np.ndarray, msc: bool, crf: bool, device: Union[str, torch.device]
) -> dict[str, Any]:
    """Segment one ``(H, W, 3) uint8`` RGB image; the overlays and legend the demo shows.

    Returns a dict with ``overlay`` (the final result), ``before`` / ``after`` (without and with
    the CRF; None when ``crf`` is off) and ``legend`` (HTML), and ``labels``.
    """
    image = np.ascontiguousarray(np.asarray(image)[..., :3]).astype(np.uint8)
    scales = None if msc else ()  # None: the weights' protocol
    segmenter = Segmenter(model, scales=scales, crf=crf or None, device=device)
    probs = segmenter.probabilities(image)
    before = segmenter.prediction(probs).labels.numpy()
    result: dict[str, Any] = {"before": None, "after": None}
    labels = before
    if crf:
        labels = segmenter.prediction(segmenter.refine(image, probs)).labels.numpy()
        result["before"], result["after"] = overlay(image, before), overlay(image, labels)
    result["overlay"] = overlay(image, labels)
    result["legend"] = legend_html(labels, segmenter.class_names)
    result["labels"] = labels
    return result


_WEIGHTS_SUFFIXES = (".safetensors", ".pth", ".pt", ".caffemodel")


def check_weights(spec: str) -> None:
    """Refuse, at start-up rather than on the first click, weights the demo could not load: a
    missing or unreadable file, an unknown registry name, a malformed ``hf-hub:`` name. Nothing
    is loaded or downloaded."""
    if spec.startswith("hf-hub:"):
        parts = spec[len("hf-hub:") :].strip("/").split("/")
        if len(parts) < 2 or not all(parts[:2]):
            raise ValueError(f"weights {spec!r}: expected 'hf-hub:<owner>/<repo>[/<filename>]'")
    elif os.path.exists(spec) or (
        find_weights(spec) is None
        and (spec.lower().endswith(_WEIGHTS_SUFFIXES) or os.sep in spec or "/" in spec)
    ):
        check_readable(spec, "weights file")
    else:
        get_weights(spec)  # an unknown name: a ValueError that lists the known ones


class _Models:
    """Weights loaded on first use and kept (one lock: Gradio serves requests in threads)."""

    def __init__(self, models: Mapping[str, nn.Module], device: torch.device) -> None:
        self.loaded = {name: model.to(device).eval() for name, model in models.items()}
        self.device = device
        self.lock = threading.Lock()

    def get(self, name: str) -> nn.Module:
        with self.lock:
            if name not in self.loaded:
                self.loaded[name] = load_model(name).to(self.device).eval()
            return self.loaded[name]


def build_demo(
    weights: Sequence[str] = DEFAULT_WEIGHTS,
    *,
    models: Optional[Mapping[str, nn.Module]] = None,
    examples: Sequence[Any] = (),
    device: Union[str, torch.device] = "cpu",
) -> Any:
    """The Gradio app.

    Args:
        weights: weights names or files offered in the menu (checked now, loaded when first
            chosen: :func:`check_weights`).
        models: ready models offered first, by label (e.g. a fine-tuned network).
        examples: example images (paths or arrays) under the input.
        device: where the network and the CRF run.

    Returns:
        a ``gradio.Blocks``; call ``.launch()`` on it.
    """
    gr = require_gradio()
    cache = _Models(models or {}, torch.device(device))
    choices = [*cache.loaded, *[w for w in weights if w not in cache.loaded]]
    if not choices:
        raise ValueError("the demo needs at least one weights name, file or model")
    for name in choices[len(cache.loaded) :]:
        check_weights(name)

    def respond(image: Optional[np.ndarray], name: str, msc: bool, crf: bool) -> tuple:
        if image is None:
            raise gr.Error("upload an image or pick an example first")
        model = cache.get(name)
        with torch.inference_mode():
            out = segment(model, image, msc, crf, cache.device)
        protocol = protocol_of(model)
        note = (
            f"{name}: {model.num_classes} classes; "
            + (f"MSC {list(protocol.scales)} + 1.0" if msc and protocol.scales else "single scale")
            + (f", CRF ({protocol.crf})" if crf else "")
        )
        return (
            out["overlay"],
            out["legend"],
            gr.update(value=out["before"], visible=crf),
            gr.update(value=out["after"], visible=crf),
            note,
        )

    return _layout(gr, choices, examples, respond)


def _layout(gr: Any, choices: Sequence[str], examples: Sequence[Any], respond: Callable) -> Any:
    """The page: input, weights menu, MSC and CRF switches; overlay, legend, before/after."""
    with gr.Blocks(title="DeepLab v2", analytics_enabled=False) as demo:
        gr.Markdown(
            "# DeepLab v2\nSemantic segmentation with the Caffe release's network "
            "(atrous ResNet-101 / VGG-16, ASPP), multi-scale inputs and the dense CRF."
        )
        with gr.Row():
            with gr.Column():
                image = gr.Image(label="photo", type="numpy", sources=["upload"])
                name = gr.Dropdown(choices, value=choices[0], label="weights")
                with gr.Row():
                    msc = gr.Checkbox(label="the weights' multi-scale testing (MSC)", value=True)
                    crf = gr.Checkbox(label="dense CRF", value=False)
                button = gr.Button("Segment", variant="primary", elem_id="segment")
                if examples:
                    gr.Examples(examples=[[e] for e in examples], inputs=[image])
            with gr.Column():
                result = gr.Image(label="overlay", type="numpy", elem_id="overlay")
                legend = gr.HTML(elem_id="legend")
                note = gr.Markdown(elem_id="note")
        with gr.Row():
            before = gr.Image(label="before the CRF", visible=False, elem_id="before")
            after = gr.Image(label="after the CRF", visible=False, elem_id="after")
        button.click(
            respond,
            [image, name, msc, crf],
            [result, legend, before, after, note],
            api_name="segment",
        )
    return demo
