"""Read Caffe ``.caffemodel`` files without Caffe: a protobuf wire-format parser.

Only what weights need is decoded (field numbers from ``caffe.proto``):

* ``NetParameter``: ``name`` = 1, legacy V1 ``layers`` = 2, ``layer`` = 100;
* ``LayerParameter``: ``name`` = 1, ``type`` = 2 (string), ``blobs`` = 7;
* ``V1LayerParameter``: ``name`` = 4, ``type`` = 5 (enum), ``blobs`` = 6;
* ``BlobProto``: ``num``/``channels``/``height``/``width`` = 1..4 (legacy shape), ``data`` = 5
  (float), ``shape`` = 7 (``BlobShape.dim`` = 1, int64), ``double_data`` = 8.

Repeated numbers are accepted packed or unpacked, as protobuf parsers must.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

import numpy as np

__all__ = ["CaffeFormatError", "CaffeLayer", "read_caffemodel", "parse_net"]

# V1LayerParameter.LayerType values of the layers that carry blobs (caffe.proto).
_V1_TYPES = {4: "Convolution", 14: "InnerProduct", 39: "Deconvolution"}

_VARINT, _FIXED64, _BYTES, _FIXED32 = 0, 1, 2, 5


class CaffeFormatError(ValueError):
    """The bytes are not a (complete) Caffe ``NetParameter``."""


@dataclass
class CaffeLayer:
    """One layer of a Caffe net: its name, type and parameter blobs (float32 arrays)."""

    name: str
    type: str
    blobs: list[np.ndarray] = field(default_factory=list)


def _varint(buf: memoryview, pos: int, end: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        if pos >= end:
            raise CaffeFormatError(f"truncated varint at byte {pos}")
        byte = buf[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return result, pos
        shift += 7
        if shift > 63:
            raise CaffeFormatError(f"malformed varint at byte {pos}")


def _fields(buf: memoryview, start: int, end: int):
    """Yield ``(field number, wire type, value)``; value is an int or a ``(start, end)`` span."""
    pos = start
    while pos < end:
        key, pos = _varint(buf, pos, end)
        number, wire = key >> 3, key & 7
        if number == 0:
            raise CaffeFormatError(f"invalid field number 0 at byte {pos}")
        if wire == _VARINT:
            value, pos = _varint(buf, pos, end)
        elif wire == _FIXED64:
            value, pos = (pos, pos + 8), pos + 8
        elif wire == _BYTES:
            length, pos = _varint(buf, pos, end)
            value, pos = (pos, pos + length), pos + length
        elif wire == _FIXED32:
            value, pos = (pos, pos + 4), pos + 4
        else:
            raise CaffeFormatError(f"unsupported wire type {wire} at byte {pos}")
        if pos > end:
            raise CaffeFormatError(
                f"field {number} runs past the end of its message (byte {pos} > {end}): "
                "the file is truncated"
            )
        yield number, wire, value


def _numbers(buf: memoryview, value: tuple[int, int], dtype: str, out: list[np.ndarray]) -> None:
    """Collect a packed (bytes) or single (fixed-width) float/double field into ``out``."""
    start, end = value
    item = np.dtype(dtype).itemsize
    if (end - start) % item:
        raise CaffeFormatError(f"packed {dtype} data of {end - start} bytes at byte {start}")
    out.append(np.frombuffer(buf[start:end], dtype=dtype))


def _varints(buf: memoryview, wire: int, value, out: list[int]) -> None:
    if wire == _VARINT:
        out.append(value)
        return
    pos, end = value
    while pos < end:
        number, pos = _varint(buf, pos, end)
        out.append(number)


def _signed(value: int) -> int:
    return value - (1 << 64) if value >= 1 << 63 else value


def _blob(buf: memoryview, start: int, end: int, where: str) -> np.ndarray:
    legacy = {1: 1, 2: 1, 3: 1, 4: 1}
    has_legacy = False
    dims: list[int] = []
    floats: list[np.ndarray] = []
    doubles: list[np.ndarray] = []
    for number, wire, value in _fields(buf, start, end):
        if number in legacy and wire == _VARINT:
            legacy[number] = _signed(value)
            has_legacy = True
        elif number == 5 and wire in (_BYTES, _FIXED32):
            _numbers(buf, value, "<f4", floats)
        elif number == 8 and wire in (_BYTES, _FIXED64):
            _numbers(buf, value, "<f8", doubles)
        elif number == 7 and wire == _BYTES:
            for sub, sub_wire, sub_value in _fields(buf, *value):
                if sub == 1:
                    _varints(buf, sub_wire, sub_value, dims)
    data = np.concatenate(floats) if floats else np.concatenate(doubles) if doubles else None
    if data is None:
        data = np.zeros(0, dtype=np.float32)
    shape = [_signed(d) for d in dims] if dims else [legacy[n] for n in (1, 2, 3, 4)]
    if not dims and not has_legacy:
        shape = [data.size]
    if any(d < 0 for d in shape) or int(np.prod(shape)) != data.size:
        raise CaffeFormatError(
            f"{where}: blob shape {tuple(shape)} does not match its {data.size} values"
        )
    return data.astype(np.float32).reshape(shape)


def _layer(buf: memoryview, start: int, end: int, v1: bool) -> CaffeLayer:
    name_field, type_field, blobs_field = (4, 5, 6) if v1 else (1, 2, 7)
    name, layer_type, spans = "", "", []
    for number, wire, value in _fields(buf, start, end):
        if number == name_field and wire == _BYTES:
            name = bytes(buf[value[0] : value[1]]).decode("utf-8", errors="replace")
        elif number == type_field:
            if v1 and wire == _VARINT:
                layer_type = _V1_TYPES.get(value, f"V1:{value}")
            elif wire == _BYTES:
                layer_type = bytes(buf[value[0] : value[1]]).decode("utf-8", errors="replace")
        elif number == blobs_field and wire == _BYTES:
            spans.append(value)
    where = f"layer {name or '<unnamed>'}"
    return CaffeLayer(name, layer_type, [_blob(buf, s, e, where) for s, e in spans])


def parse_net(data: bytes | memoryview) -> tuple[str, list[CaffeLayer]]:
    """Parse serialized ``NetParameter`` bytes -> ``(net name, layers in file order)``.

    Raises:
        CaffeFormatError: truncated or malformed data, or a net with no layers.
    """
    buf = memoryview(data)
    name, layers = "", []
    for number, wire, value in _fields(buf, 0, len(buf)):
        if number == 1 and wire == _BYTES:
            name = bytes(buf[value[0] : value[1]]).decode("utf-8", errors="replace")
        elif number in (2, 100) and wire == _BYTES:
            layers.append(_layer(buf, *value, v1=number == 2))
    if not layers:
        raise CaffeFormatError("no layers found: this is not a Caffe NetParameter (.caffemodel)")
    return name, layers


def read_caffemodel(path: str | os.PathLike) -> tuple[str, list[CaffeLayer]]:
    """Read a ``.caffemodel`` file -> ``(net name, layers)``; see :func:`parse_net`.

    Raises:
        FileNotFoundError: no such file.
        CaffeFormatError: the file is truncated, corrupt or not a ``.caffemodel``; the message
            names the file.
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"no Caffe model at {path!r}")
    with open(path, "rb") as handle:
        data = handle.read()
    try:
        return parse_net(data)
    except CaffeFormatError as error:
        raise CaffeFormatError(
            f"{path}: not a valid .caffemodel ({error}); re-download the file"
        ) from None
