"""List a wheel's files and fail if it holds anything but the package and its metadata."""

from __future__ import annotations

import sys
import zipfile

ALLOWED_TOP = ("deeplabv2/", "deeplabv2-")  # the package and its .dist-info folder
#: Files that are not Python modules and must be in the wheel (pyproject's package-data).
PACKAGE_DATA = ("deeplabv2/py.typed", "deeplabv2/data/photos/astronaut.jpg")


def main(wheel: str) -> int:
    names = zipfile.ZipFile(wheel).namelist()
    print(f"{wheel}: {len(names)} files")
    for name in names:
        print(f"  {name}")
    stray = [n for n in names if not n.startswith(ALLOWED_TOP)]
    tests = [n for n in names if "/tests/" in n or n.startswith("tests/") or "conftest" in n]
    if stray or tests:
        print(f"the wheel holds files outside the package: {stray + tests}", file=sys.stderr)
        return 1
    missing = [n for n in PACKAGE_DATA if n not in names]
    if missing:
        print(f"the wheel lacks its package data: {missing}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
