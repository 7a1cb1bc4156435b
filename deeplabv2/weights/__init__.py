"""Pretrained weights: the registry, loading (Hub, torch.hub, files) and Caffe conversion."""

from .caffe import CaffeFormatError, CaffeLayer, parse_net, read_caffemodel
from .convert import (
    CONVERSION_VERSION,
    WeightsMismatchError,
    caffe_block_name,
    caffe_layer_table,
    caffe_to_state_dict,
    check_state_dict,
    convert,
    load_weights_file,
    peer_to_state_dict,
    save_safetensors,
)
from .hub import WeightsUnavailableError, load_pretrained, resolve_weights_file, sha256sum
from .registry import DEFAULT_WEIGHTS, Weights, get_weights, list_weights

__all__ = [
    "CONVERSION_VERSION",
    "DEFAULT_WEIGHTS",
    "CaffeFormatError",
    "CaffeLayer",
    "Weights",
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
