"""Pretrained weights: the registry, loading (Hub, torch.hub, files) and Caffe conversion."""

from ..errors import (
    CaffeFormatError,
    WeightsFormatError,
    WeightsMismatchError,
    WeightsUnavailableError,
)
from .caffe import CaffeLayer, parse_net, read_caffemodel
from .convert import (
    CONVERSION_VERSION,
    caffe_block_name,
    caffe_layer_table,
    caffe_to_state_dict,
    check_state_dict,
    convert,
    load_weights_file,
    peer_to_state_dict,
)
from .files import save_safetensors
from .hub import load_pretrained, resolve_weights_file, sha256sum
from .registry import DEFAULT_WEIGHTS, Weights, get_weights, list_weights

__all__ = [
    "CONVERSION_VERSION",
    "DEFAULT_WEIGHTS",
    "CaffeFormatError",
    "CaffeLayer",
    "Weights",
    "WeightsFormatError",
    "WeightsMismatchError",
    "WeightsUnavailableError",
    "caffe_block_name",
    "caffe_layer_table",
    "caffe_to_state_dict",
    "check_state_dict",
    "convert",
    "get_weights",
    "list_weights",
    "load_pretrained",
    "load_weights_file",
    "parse_net",
    "peer_to_state_dict",
    "read_caffemodel",
    "resolve_weights_file",
    "save_safetensors",
    "sha256sum",
]
