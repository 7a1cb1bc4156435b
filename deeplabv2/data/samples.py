"""Sample photos shipped with the package, for a first command that needs no files of one's own.

``astronaut.jpg``: Eileen Collins, NASA astronaut (NASA's Great Images database, public domain;
the same photo as scikit-image's ``skimage.data.astronaut()``), 320x320 RGB JPEG, about 25 KB.
``deeplabv2 sample DIR`` copies it into ``DIR``.
"""

from __future__ import annotations

from pathlib import Path

__all__ = ["SAMPLES", "sample_image"]

#: The shipped photos: file name -> where it comes from (its licence).
SAMPLES = {
    "astronaut.jpg": "Eileen Collins, NASA astronaut; NASA Great Images database "
    "(https://flic.kr/p/r9qvLn), public domain; as in scikit-image's data.astronaut(), "
    "resized to 320x320",
}

_FOLDER = Path(__file__).resolve().with_name("photos")


def sample_image(name: str = "astronaut.jpg") -> Path:
    """The path of a sample photo installed with the package (an RGB JPEG).

    Args:
        name: one of :data:`SAMPLES` (default: ``astronaut.jpg``, 320x320).

    Raises:
        ValueError: ``name`` is not a shipped sample (the message lists them).
        FileNotFoundError: the installation lacks the file (the package data was left out).
    """
    if name not in SAMPLES:
        raise ValueError(f"no sample photo {name!r}; the samples are: {', '.join(SAMPLES)}")
    path = _FOLDER / name
    if not path.is_file():
        raise FileNotFoundError(
            f"{path} is missing: this installation of deeplabv2 lacks its package data; "
            "reinstall it (pip install --force-reinstall deeplabv2)"
        )
    return path
