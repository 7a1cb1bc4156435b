"""``python -m deeplabv2 ...`` (and ``torchrun ... -m deeplabv2 eval|predict ...``)."""

import sys

from .cli import main

sys.exit(main())
