"""The package version (PEP 440), read by ``pyproject.toml`` and ``deeplabv2.__version__``."""

__version__ = "0.1.0"
