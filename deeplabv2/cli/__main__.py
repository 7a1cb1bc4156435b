"""``python -m deeplabv2.cli ...``: the same as ``python -m deeplabv2 ...``."""

import sys

from .main import main

if __name__ == "__main__":
    sys.exit(main())
