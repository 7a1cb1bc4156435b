"""Deprecated location of the ``torch`` backend, kept for ``examples/tune_crf.py``: import
:func:`deeplabv2.crf.backends.torch.mean_field` instead. Remove once nothing imports it."""

from .backends.torch import mean_field

__all__ = ["mean_field"]
