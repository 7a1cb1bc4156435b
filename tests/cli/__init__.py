"""Tests of the ``deeplabv2`` command line, one file per module of ``deeplabv2/cli/``."""
