"""Write synthetic release-style .caffemodel files (see caffe_writer for the encoding)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from . import caffe_writer as cw

BLOBLESS = [
    ("data", "Data"),
    ("conv1_relu", "ReLU"),
    ("label_shrink", "Interp"),
    ("loss", "SoftmaxWithLoss"),
    ("res2a", "Eltwise"),
]


def encoding_for(index: int, array: np.ndarray) -> cw.BlobEncoding:
    """Vary the blob encodings across layers: legacy dims, doubles, unpacked floats."""
    if index % 5 == 1:
        return cw.BlobEncoding(legacy_shape=True)
    if index % 5 == 2:
        return cw.BlobEncoding(double=True)
    if index % 5 == 3 and array.size <= 1024:
        return cw.BlobEncoding(packed=False)
    return cw.BlobEncoding()


def write_caffemodel(
    path: Path,
    layers: dict,
    v1: bool = False,
    copies: dict[str, str] | None = None,
    blobless: bool = True,
) -> Path:
    """Write ``layers`` (name -> (type, blobs)); ``copies``: MSC copies, new name -> original."""
    encoded = []
    if blobless:
        encoded += [cw.layer(n, t, v1=v1) for n, t in BLOBLESS]
    for index, (name, (layer_type, blobs)) in enumerate(layers.items()):
        encodings = [encoding_for(index, b) for b in blobs]
        encoded.append(cw.layer(name, layer_type, blobs, encodings, v1=v1))
    for name, original in (copies or {}).items():
        layer_type, blobs = layers[original]
        encoded.append(cw.layer(name, layer_type, blobs, v1=v1))
    path.write_bytes(cw.net("DeepLab-v2 ResNet-101 synthetic", encoded))
    return path
