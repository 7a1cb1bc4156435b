"""Weights on disk and on the network: I/O only (no model is imported here).

Reading (:func:`read_checkpoint`: ``.safetensors``, ``.pth`` with ``weights_only``,
``.caffemodel`` without Caffe), finding, downloading, caching and verifying
(:func:`resolve_weights`), the registry of named weights (:func:`list_weights`,
:func:`get_weights`, :class:`Weights` with its :class:`EvalProtocol`), and writing
(:func:`save_safetensors`, :func:`atomic_write`). How weights become a model's state dict is
each model family's business (``deeplabv2.models``).
"""

from .checkpoint import Checkpoint, read_checkpoint
from .files import atomic_write, save_safetensors
from .hub import resolve_weights
from .registry import EvalProtocol, Weights, get_weights, list_weights

__all__ = [
    "Checkpoint",
    "EvalProtocol",
    "Weights",
    "atomic_write",
    "get_weights",
    "list_weights",
    "read_checkpoint",
    "resolve_weights",
    "save_safetensors",
]
