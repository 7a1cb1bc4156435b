"""Lazy re-exports for the package ``__init__`` files (PEP 562): a name is imported from its
module the first time it is read, so that ``import deeplabv2`` (and the command line's
``--help``) loads no torch until something that needs it is used.

A package writes its public names once, as a table, and keeps ``if TYPE_CHECKING:`` imports of
the same names for type checkers and IDEs::

    __getattr__, __dir__ = lazy_exports(__name__, {"DenseCRF": ".crf", "crf": ".crf"})

A value of ``".crf"`` for the name ``"crf"`` itself is the submodule; any other name is the
attribute of that name in the module.
"""

from __future__ import annotations

import importlib
from typing import Any, Callable

__all__ = ["lazy_exports"]


def lazy_exports(
    package: str, names: dict[str, str]
) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """The ``__getattr__`` and ``__dir__`` of the package ``package``.

    Args:
        package: the package's ``__name__``.
        names: public name -> the module (relative to ``package``, e.g. ``".crf"``, or
            absolute) it comes from; a name equal to its module's last part is the module.

    Returns:
        ``__getattr__`` (imports on first read and caches the value in the package, so that
        later reads cost nothing; AttributeError for any other name) and ``__dir__`` (the
        package's loaded names and the lazy ones, sorted).
    """
    namespace = importlib.import_module(package).__dict__

    def __getattr__(name: str) -> Any:
        if name not in names:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        module = importlib.import_module(names[name], package)
        is_module = module.__name__ == f"{package}.{name}"
        value = module if is_module else getattr(module, name)
        namespace[name] = value
        return value

    def __dir__() -> list[str]:
        return sorted({*namespace, *names})

    return __getattr__, __dir__
