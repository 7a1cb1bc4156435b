"""Weights: the Caffe name table (conversion, registry and loading build on it)."""

from .convert import caffe_block_name, caffe_layer_table

__all__ = ["caffe_block_name", "caffe_layer_table"]
