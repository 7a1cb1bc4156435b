"""Weights on disk and on the network: I/O only (no model is imported here).

Reading (:func:`read_checkpoint`: ``.safetensors``, ``.pth`` with ``weights_only``,
``.caffemodel`` without Caffe), finding, downloading, caching and verifying
(:func:`resolve_weights`, :func:`hf_download`), the registry of named weights
(:func:`list_weights`, :func:`get_weights`, :class:`Weights`; each model family registers its
own entries with :func:`register_weights`), and writing (:func:`save_safetensors`). How weights
become a model's state dict is each model family's business (``deeplabv2.models``).
"""

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
