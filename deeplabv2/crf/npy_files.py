"""Reading ``.npy`` / ``.npz`` score files that nobody vouches for, one bounded array at a time.

``np.load`` trusts a file: an ``.npz`` member may declare a 36 TiB array (allocated before a
byte is read), a deflate bomb is inflated whole, anything that is neither a zip nor an ``.npy``
is unpickled (with ``allow_pickle``), and its errors name no file. Here the header of each array
is read first and its declared shape checked against what the image allows (at most
:data:`MAX_CHANNELS` channels of the image's pixels) before any data is read; exactly the
declared bytes are then read (inflated) and nothing more; members that are not needed are never
read; every failure is a ``ValueError`` that names the file (and the member).
"""

from __future__ import annotations

import math
import pickle
import zipfile
from collections.abc import Iterator, Mapping
from typing import IO, Any, Optional

import numpy as np

__all__ = ["MAX_CHANNELS", "MAX_UNSIZED_BYTES", "NpzFields", "PICKLE_HINT", "open_scores"]

#: the most channels (classes or CAMs) a score array may declare
MAX_CHANNELS = 256
#: the most bytes one array may declare when the image's size is not known
MAX_UNSIZED_BYTES = 1 << 31

PICKLE_HINT = (
    "it holds pickled Python objects (np.save of a dict, as IRN's make_cam.py and PSA's "
    "infer_cls.py write). Loading a pickle runs code chosen by whoever made the file: pass "
    "--allow-pickle (allow_pickle=True) only for files you trust, or convert them once to .npz "
    "(np.savez(path, high_res=d['high_res'], keys=np.asarray(d['keys'])))"
)

_NPY_MAGIC = b"\x93NUMPY"
_ZIP_MAGICS = (b"PK\x03\x04", b"PK\x05\x06")  # a member first, or an empty archive
_PICKLE_PROTOCOL = b"\x80"  # pickle protocols 2 and above start with PROTO


def _check_declared(
    shape: tuple[int, ...], dtype: np.dtype, where: str, pixels: Optional[int]
) -> None:
    """ValueError unless an array of ``shape`` and ``dtype`` can be a score array (or CAM keys)
    of an image of ``pixels`` pixels: 1 to 3 dimensions, at most :data:`MAX_CHANNELS` channels,
    at most ``pixels`` pixels per channel (or :data:`MAX_UNSIZED_BYTES` in all)."""
    if not 1 <= len(shape) <= 3:
        raise ValueError(f"{where}: declares an array of shape {shape}; expected (C, H, W)")
    channels = shape[0] if len(shape) in (1, 3) else 1
    per_channel = math.prod(shape[-2:]) if len(shape) >= 2 else 1
    nbytes = math.prod(shape) * dtype.itemsize
    if channels > MAX_CHANNELS:
        raise ValueError(
            f"{where}: declares {channels} channels (shape {shape}); score files hold at most "
            f"{MAX_CHANNELS} classes or CAMs"
        )
    if pixels is not None and per_channel > pixels:
        raise ValueError(
            f"{where}: declares {per_channel} pixels per channel (shape {shape}) but its image "
            f"has {pixels}: scores must be at the image's size"
        )
    if pixels is None and nbytes > MAX_UNSIZED_BYTES:
        raise ValueError(f"{where}: declares {nbytes} bytes (shape {shape}, {dtype}): too large")


def _read_npy(handle: IO[bytes], where: str, allow_pickle: bool, pixels: Optional[int]) -> Any:
    """The array stored in ``handle`` (an ``.npy`` stream), its header checked first."""
    start = handle.tell()
    version = np.lib.format.read_magic(handle)
    if version == (1, 0):
        shape, _, dtype = np.lib.format.read_array_header_1_0(handle)
    elif version == (2, 0):
        shape, _, dtype = np.lib.format.read_array_header_2_0(handle)
    else:
        raise ValueError(f"{where}: .npy format version {version} is not supported")
    if dtype.hasobject:
        if not allow_pickle:
            raise ValueError(f"{where}: {PICKLE_HINT}")
    else:
        _check_declared(shape, dtype, where, pixels)
    handle.seek(start)
    return np.lib.format.read_array(handle, allow_pickle=allow_pickle)


def _guarded(where: str, read: Any) -> Any:
    """``read()``, with any failure but an interrupt as a ValueError naming ``where``."""
    try:
        return read()
    except ValueError as error:
        if str(error).startswith(where):
            raise
        raise ValueError(f"{where}: cannot be read ({error})") from None
    except Exception as error:  # noqa: BLE001 - the file's own fault, whatever it raised
        raise ValueError(f"{where}: cannot be read ({type(error).__name__}: {error})") from None


class NpzFields(Mapping):
    """The arrays of an ``.npz`` file by field name, each read (and checked) when asked for.

    Use it as a context manager (or call :meth:`close`): the archive stays open until then.
    """

    def __init__(self, path: str, allow_pickle: bool, pixels: Optional[int]) -> None:
        self.path, self.allow_pickle, self.pixels = path, allow_pickle, pixels
        self._zip = _guarded(path, lambda: zipfile.ZipFile(path))
        names = [n for n in self._zip.namelist() if n.endswith(".npy")]
        self._members = {name[: -len(".npy")]: name for name in names}

    def __getitem__(self, field: str) -> Any:
        member = self._members[field]
        where = f"{self.path} (member {member})"

        def read() -> Any:
            with self._zip.open(member) as handle:
                return _read_npy(handle, where, self.allow_pickle, self.pixels)

        return _guarded(where, read)

    def __iter__(self) -> Iterator[str]:
        return iter(self._members)

    def __len__(self) -> int:
        return len(self._members)

    def close(self) -> None:
        """Close the archive."""
        self._zip.close()

    def __enter__(self) -> NpzFields:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def open_scores(path: str, *, allow_pickle: bool, pixels: Optional[int] = None) -> Any:
    """A score file's content: :class:`NpzFields` for an ``.npz``, else the array (or, with
    ``allow_pickle``, the unpickled object) of an ``.npy``.

    Args:
        path: the file.
        allow_pickle: read pickled objects (this runs code chosen by the file's maker).
        pixels: the image's ``H * W``; arrays declaring more pixels per channel are refused
            before they are read (None: at most :data:`MAX_UNSIZED_BYTES` each).

    Raises:
        FileNotFoundError: no such file.
        ValueError: naming the file (and member) for anything else that is wrong with it.
    """
    with open(path, "rb") as handle:
        magic = handle.read(len(_NPY_MAGIC))
        if magic.startswith(_ZIP_MAGICS):
            return NpzFields(path, allow_pickle, pixels)
        handle.seek(0)
        if magic == _NPY_MAGIC:
            return _guarded(path, lambda: _read_npy(handle, path, allow_pickle, pixels))
        if magic.startswith(_PICKLE_PROTOCOL):  # np.load's last resort: a pickle file
            if not allow_pickle:
                raise ValueError(f"{path}: {PICKLE_HINT}")
            return _guarded(path, lambda: pickle.load(handle))  # noqa: S301 - asked for
    raise ValueError(f"{path}: not a numpy .npy/.npz file (it starts with {magic!r})")
