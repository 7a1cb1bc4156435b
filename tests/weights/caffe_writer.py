"""A minimal protobuf encoder for Caffe NetParameter files, written for the tests.

Field numbers from caffe.proto: NetParameter name=1, layers=2 (V1), layer=100; LayerParameter
name=1, type=2, blobs=7; V1LayerParameter name=4, type=5 (enum), blobs=6; BlobProto num=1,
channels=2, height=3, width=4, data=5, shape=7 (BlobShape dim=1), double_data=8.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

import numpy as np


def varint(value: int) -> bytes:
    value &= (1 << 64) - 1
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def key(number: int, wire: int) -> bytes:
    return varint(number << 3 | wire)


def length_delimited(number: int, payload: bytes) -> bytes:
    return key(number, 2) + varint(len(payload)) + payload


@dataclass
class BlobEncoding:
    """How one blob is written: shape message or legacy dims; packed/unpacked floats; doubles."""

    legacy_shape: bool = False
    packed: bool = True
    double: bool = False


def blob(array: np.ndarray, encoding: BlobEncoding | None = None) -> bytes:
    encoding = encoding or BlobEncoding()
    out = b""
    if encoding.legacy_shape:
        dims = [1] * (4 - array.ndim) + list(array.shape)
        for number, dim in zip((1, 2, 3, 4), dims):
            out += key(number, 0) + varint(dim)
    else:
        dims = b"".join(varint(d) for d in array.shape)
        out += length_delimited(7, length_delimited(1, dims))
    flat = array.ravel()
    if encoding.double:
        out += length_delimited(8, flat.astype("<f8").tobytes())
    elif encoding.packed:
        out += length_delimited(5, flat.astype("<f4").tobytes())
    else:
        out += b"".join(key(5, 5) + struct.pack("<f", v) for v in flat.tolist())
    return out


def layer(
    name: str,
    layer_type: str,
    blobs: list[np.ndarray] = (),
    encodings: list[BlobEncoding] | None = None,
    v1: bool = False,
) -> bytes:
    encodings = encodings or [BlobEncoding()] * len(blobs)
    encoded = [blob(b, e) for b, e in zip(blobs, encodings)]
    if v1:
        v1_type = {"Convolution": 4, "ReLU": 18, "Data": 5}.get(layer_type, 0)
        payload = length_delimited(4, name.encode()) + key(5, 0) + varint(v1_type)
        payload += b"".join(length_delimited(6, b) for b in encoded)
        return length_delimited(2, payload)
    payload = length_delimited(1, name.encode()) + length_delimited(2, layer_type.encode())
    payload += length_delimited(3, b"data")  # a bottom, to be skipped by readers
    payload += b"".join(length_delimited(7, b) for b in encoded)
    return length_delimited(100, payload)


def net(name: str, layers: list[bytes]) -> bytes:
    return length_delimited(1, name.encode()) + b"".join(layers)
