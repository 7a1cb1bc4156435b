"""Weights on disk and on the network: I/O only (no model is imported here).

Reading (:func:`read_checkpoint`: ``.safetensors``, ``.pth`` with ``weights_only``,
``.caffemodel`` without Caffe), finding, downloading, caching and verifying
(:func:`resolve_weights`, :func:`hf_download`), the registry of named weights
(:func:`list_weights`, :func:`get_weights`, :class:`Weights`; the entries of the built-in model
families are data in :mod:`.zoo`, loaded on the first lookup; another family registers its own
with :func:`register_weights`), and writing (:func:`save_safetensors`). How weights become a
model's state dict is each model family's business (``deeplabv2.models``).

The names are imported when first read (``deeplabv2._lazy``): the registry loads no torch, so
``deeplabv2 weights`` lists the entries at once.
"""

from typing import TYPE_CHECKING

from .._lazy import lazy_exports

if TYPE_CHECKING:
    from .caffe import CaffeLayer
    from .checkpoint import Checkpoint, read_checkpoint
    from .download import discard, hf_download, resolve_weights, sha256sum
    from .registry import Weights, find_weights, get_weights, list_weights, register_weights
    from .state_dicts import save_safetensors

__all__ = [
    "CaffeLayer",
    "Checkpoint",
    "Weights",
    "discard",
    "find_weights",
    "get_weights",
    "hf_download",
    "list_weights",
    "read_checkpoint",
    "register_weights",
    "resolve_weights",
    "save_safetensors",
    "sha256sum",
]

__getattr__, __dir__ = lazy_exports(
    __name__,
    {
        "CaffeLayer": ".caffe",
        **dict.fromkeys(("Checkpoint", "read_checkpoint"), ".checkpoint"),
        **dict.fromkeys(("discard", "hf_download", "resolve_weights", "sha256sum"), ".download"),
        **dict.fromkeys(
            ("Weights", "find_weights", "get_weights", "list_weights", "register_weights"),
            ".registry",
        ),
        "save_safetensors": ".state_dicts",
    },
)
