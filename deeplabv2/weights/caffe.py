"""Read Caffe ``.caffemodel`` files without Caffe: a protobuf wire-format parser.

Only what weights need is decoded (field numbers from ``caffe.proto``):

* ``NetParameter``: ``name`` = 1, legacy V1 ``layers`` = 2, ``layer`` = 100;
* ``LayerParameter``: ``name`` = 1, ``type`` = 2 (string), ``blobs`` = 7;
* ``V1LayerParameter``: ``name`` = 4, ``type`` = 5 (enum), ``blobs`` = 6;
* ``BlobProto``: ``num``/``channels``/``height``/``width`` = 1..4 (legacy shape), ``data`` = 5
  (float), ``shape`` = 7 (``BlobShape.dim`` = 1, int64), ``double_data`` = 8.

Repeated numbers are accepted packed or unpacked, as protobuf parsers must; runs of unpacked
floats are decoded in one vectorised step, so memory stays a small multiple of the file size.
Files that cannot be DeepLab weights (more than :data:`MAX_LAYERS` layers, blobs of more than
four axes) are refused early rather than parsed at length.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .._files import read_bytes
from ..errors import CaffeFormatError

__all__ = ["MAX_LAYERS", "CaffeFormatError", "CaffeLayer", "read_caffemodel", "parse_net"]

#: The most layers a file may have. DeepLab v2's largest net (ResNet-101 with MSC training
#: copies of every layer) has about 1,700; anything far beyond is not a DeepLab model.
MAX_LAYERS = 20_000
#: Axes of a blob: DeepLab's convolution, BatchNorm and Scale blobs have at most four.
MAX_BLOB_AXES = 4

# V1LayerParameter.LayerType values of the layers that carry blobs (caffe.proto).
_V1_TYPES = {4: "Convolution", 14: "InnerProduct", 39: "Deconvolution"}

_VARINT, _FIXED64, _BYTES, _FIXED32 = 0, 1, 2, 5


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


class _Fields:
    """Iterate ``(field number, wire type, value)`` over one message.

    ``value`` is an int (varints) or a ``(start, end)`` byte span. ``pos`` is public so that a
    caller which consumed a run of fields itself can move the iterator past it.
    """

    def __init__(self, buf: memoryview, start: int, end: int) -> None:
        self.buf, self.pos, self.end = buf, start, end

    def __iter__(self) -> _Fields:
        return self

    def __next__(self) -> tuple[int, int, Any]:
        """``(field number, wire type, value)``: the value is an int (varint) or the
        ``(start, end)`` span of the field's bytes."""
        if self.pos >= self.end:
            raise StopIteration
        value: Any
        key, pos = _varint(self.buf, self.pos, self.end)
        number, wire = key >> 3, key & 7
        if number == 0:
            raise CaffeFormatError(f"invalid field number 0 at byte {pos}")
        if wire == _VARINT:
            value, pos = _varint(self.buf, pos, self.end)
        elif wire == _FIXED64:
            value, pos = (pos, pos + 8), pos + 8
        elif wire == _BYTES:
            length, pos = _varint(self.buf, pos, self.end)
            value, pos = (pos, pos + length), pos + length
        elif wire == _FIXED32:
            value, pos = (pos, pos + 4), pos + 4
        else:
            raise CaffeFormatError(f"unsupported wire type {wire} at byte {pos}")
        if pos > self.end:
            raise CaffeFormatError(
                f"field {number} runs past the end of its message (byte {pos} > {self.end}): "
                "the file is truncated"
            )
        self.pos = pos
        return number, wire, value


def _packed(buf: memoryview, span: tuple[int, int], dtype: str) -> np.ndarray:
    """A packed float/double field (bytes) as a read-only view."""
    start, end = span
    if (end - start) % np.dtype(dtype).itemsize:
        raise CaffeFormatError(f"packed {dtype} data of {end - start} bytes at byte {start}")
    return np.frombuffer(buf[start:end], dtype=dtype)


def _run_length(buf: memoryview, key_pos: int, end: int, key: int, stride: int) -> int:
    """How many records of ``stride`` bytes, each starting with the one-byte ``key``, follow
    one another from ``key_pos`` (the first one is known to).

    A run of one (a value between other fields) is answered without numpy; longer runs are
    checked in windows that double in size, so a run costs time in proportion to its own
    length, never to the rest of the message (which made parsing quadratic).
    """
    available = (end - key_pos) // stride
    if available < 2 or buf[key_pos + stride] != key:
        return min(available, 1)
    raw = np.frombuffer(buf, dtype=np.uint8, count=available * stride, offset=key_pos)
    count, window = 2, 16
    while count < available:
        stop = min(available, count + window)
        other = np.flatnonzero(raw[count * stride : stop * stride : stride] != key)
        if other.size:
            return count + int(other[0])
        count, window = stop, window * 2
    return available


class _Runs:
    """Runs of unpacked one-value fields (``start``, ``count``), decoded in one vectorised
    step however many there are."""

    def __init__(self, dtype: str) -> None:
        self.dtype = dtype
        self.starts: list[int] = []
        self.counts: list[int] = []

    def decode(self, buf: memoryview) -> np.ndarray:
        """The values of every run, in order: the runs' records side by side (a view when
        there is one run), their key bytes dropped."""
        stride = 1 + np.dtype(self.dtype).itemsize
        raw = np.frombuffer(buf, dtype=np.uint8)
        pieces = [raw[s : s + c * stride] for s, c in zip(self.starts, self.counts)]
        records = pieces[0] if len(pieces) == 1 else np.concatenate(pieces)
        return records.reshape(-1, stride)[:, 1:].copy().view(self.dtype).ravel()


def _varints(buf: memoryview, wire: int, value: Any, out: list[int]) -> None:
    if wire == _VARINT:
        out.append(value)
        return
    pos, end = value
    while pos < end:
        number, pos = _varint(buf, pos, end)
        out.append(number)


def _signed(value: int) -> int:
    return value - (1 << 64) if value >= 1 << 63 else value


def _data(
    buf: memoryview, parts: list, wire: int, value: tuple[int, int], end: int, dtype: str
) -> int:
    """Add a float/double field (packed bytes, or the start of a run of unpacked values) to
    ``parts``; returns where parsing goes on."""
    if wire == _BYTES:
        parts.append(_packed(buf, value, dtype))
        return value[1]
    size = np.dtype(dtype).itemsize
    key_pos = value[0] - 1
    count = _run_length(buf, key_pos, end, buf[key_pos], 1 + size)
    if not parts or not isinstance(parts[-1], _Runs):
        parts.append(_Runs(dtype))
    parts[-1].starts.append(key_pos)
    parts[-1].counts.append(count)
    return key_pos + count * (1 + size)


def _blob(buf: memoryview, start: int, end: int, where: str) -> np.ndarray:
    legacy = {1: 1, 2: 1, 3: 1, 4: 1}
    has_legacy = False
    dims: list[int] = []
    floats: list = []
    doubles: list = []
    fields = _Fields(buf, start, end)
    for number, wire, value in fields:
        if number in legacy and wire == _VARINT:
            legacy[number] = _signed(value)
            has_legacy = True
        elif number == 5 and wire in (_BYTES, _FIXED32):
            fields.pos = _data(buf, floats, wire, value, end, "<f4")
        elif number == 8 and wire in (_BYTES, _FIXED64):
            fields.pos = _data(buf, doubles, wire, value, end, "<f8")
        elif number == 7 and wire == _BYTES:
            for sub, sub_wire, sub_value in _Fields(buf, *value):
                if sub == 1:
                    _varints(buf, sub_wire, sub_value, dims)
                    if len(dims) > MAX_BLOB_AXES:
                        raise CaffeFormatError(
                            f"{where}: a blob with more than {MAX_BLOB_AXES} axes; DeepLab's "
                            "Caffe weights have at most 4 (this is not a DeepLab model)"
                        )
    parts = [p.decode(buf) if isinstance(p, _Runs) else p for p in floats or doubles]
    size = sum(part.size for part in parts)
    shape = [_signed(d) for d in dims] if dims else [legacy[n] for n in (1, 2, 3, 4)]
    if not dims and not has_legacy:
        shape = [size]
    if any(d < 0 for d in shape) or math.prod(shape) != size:
        raise CaffeFormatError(
            f"{where}: blob shape {tuple(shape)} does not match its {size} values"
        )
    if not parts:
        return np.zeros(shape, dtype=np.float32)
    data = parts[0] if len(parts) == 1 else np.concatenate(parts)
    if data.dtype != np.float32 or not data.flags.writeable:  # packed data views the file
        data = data.astype(np.float32)
    return data.reshape(shape)


def _layer(buf: memoryview, start: int, end: int, v1: bool) -> CaffeLayer:
    name_field, type_field, blobs_field = (4, 5, 6) if v1 else (1, 2, 7)
    name, layer_type, spans = "", "", []
    for number, wire, value in _Fields(buf, start, end):
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
        CaffeFormatError: truncated or malformed data, a net with no layers or more than
            :data:`MAX_LAYERS`, or a blob whose shape does not fit its values.
    """
    buf = memoryview(data)
    name, layers = "", list[CaffeLayer]()
    for number, wire, value in _Fields(buf, 0, len(buf)):
        if number == 1 and wire == _BYTES:
            name = bytes(buf[value[0] : value[1]]).decode("utf-8", errors="replace")
        elif number in (2, 100) and wire == _BYTES:
            if len(layers) == MAX_LAYERS:
                raise CaffeFormatError(
                    f"more than {MAX_LAYERS} layers: this is not a DeepLab model (the largest "
                    "DeepLab v2 net has about 1,700)"
                )
            start, end = value
            layers.append(_layer(buf, start, end, v1=number == 2))
    if not layers:
        raise CaffeFormatError("no layers found: this is not a Caffe NetParameter (.caffemodel)")
    return name, layers


def read_caffemodel(path: str | os.PathLike) -> tuple[str, list[CaffeLayer]]:
    """Read a ``.caffemodel`` file -> ``(net name, layers)``; see :func:`parse_net`.

    Raises:
        FileNotFoundError / PermissionError / IsADirectoryError: the file cannot be opened
            (the message says which).
        CaffeFormatError: the file is truncated, corrupt or not a ``.caffemodel``; the message
            names the file.
    """
    path = os.fspath(path)
    data = read_bytes(path, "Caffe model")
    try:
        return parse_net(data)
    except CaffeFormatError as error:
        raise CaffeFormatError(
            f"{path}: not a valid .caffemodel ({error}); download the file again"
        ) from None
