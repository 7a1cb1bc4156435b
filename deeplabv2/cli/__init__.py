"""The ``deeplabv2`` command line: one module per verb, each with its subparser (``add_parser``)
and its run (``run``). A verb parses, calls the library and prints: the library code behind the
verbs lives outside ``cli/`` (:func:`deeplabv2.convert`, :func:`deeplabv2.export_onnx`,
:func:`deeplabv2.publish.publish`, :func:`deeplabv2.demo.build_demo`, ...). ``options`` holds the
options the verbs share, ``writers`` the files ``predict`` writes.

Also ``python -m deeplabv2 ...``, and ``torchrun --nproc_per_node K -m deeplabv2 predict|eval``.
"""

from .main import main  # the function; the module stays sys.modules["deeplabv2.cli.main"]

__all__ = ["main"]
