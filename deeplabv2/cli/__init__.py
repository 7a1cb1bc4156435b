"""The ``deeplabv2`` command line: ``predict``, ``eval``, ``convert``, ``weights``, ``export``,
``publish``, ``demo``.

One module per verb, each with its subparser (``add_parser``) and its run (``run``); the
modules of ``convert``, ``export``, ``publish`` and ``demo`` also hold the library functions
behind them (:func:`deeplabv2.convert`, :func:`deeplabv2.export_onnx`,
:func:`deeplabv2.cli.publish.publish`, :func:`deeplabv2.cli.demo.build_demo`). ``options``
holds what ``predict`` and ``eval`` share, ``writers`` the files ``predict`` writes.

Also ``python -m deeplabv2 ...``, and ``torchrun --nproc_per_node K -m deeplabv2 predict|eval``.
"""

from .main import main  # the function; the module stays sys.modules["deeplabv2.cli.main"]

__all__ = ["main"]
