"""One vocabulary for every verb: the options several verbs take, each with one name, one
meaning and one help text (only the default differs where a verb's work differs); the help
formatter that shows every default; and the deprecated spellings of renamed options.

An option that changes its name keeps the old one for a release: :func:`deprecate` adds it,
hidden from ``--help``, and using it prints one line
(``deeplabv2: warning: --old is deprecated, use --new``) and does what the new one does.
"""

from __future__ import annotations

import argparse
import warnings
from collections.abc import Iterable, Sequence
from typing import Any, Optional

from ..data.classes import CLASS_LISTS
from .values import int_in

__all__ = [
    "FORCE_HELP",
    "DefaultsFormatter",
    "add_classes_option",
    "add_crf_params_option",
    "add_crf_workers_option",
    "add_device_option",
    "add_dialect_option",
    "add_force_option",
    "add_quiet_option",
    "add_weights_option",
    "add_workers_option",
    "deprecate",
]

#: ``--force``'s help, the same in every verb.
FORCE_HELP = "overwrite outputs that exist"
#: the words every ``--workers`` help starts with (tests/cli/test_vocabulary.py checks them)
WORKERS_MEANING = "processes reading and decoding"


class DefaultsFormatter(argparse.HelpFormatter):
    """Every option's default in its help: ``(default: X)`` is appended to an option whose
    default is a value (not None, not False) unless its help places ``%(default)s`` itself.
    An option whose default is None and means something says so in its own help."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        shown = action.default not in (None, False, argparse.SUPPRESS)
        if shown and "%(default)" not in text and action.option_strings:
            text += " (default: %(default)s)"
        return text


def _device(text: str) -> Optional[str]:
    """``--device``'s type: ``auto`` -> None (a CUDA GPU if there is one, else the CPU, as
    :meth:`deeplabv2.distributed.Ranks.device` decides), anything else as given."""
    text = text.strip()
    if not text:
        raise argparse.ArgumentTypeError("expected auto, cpu, cuda or cuda:N, got ''")
    return None if text == "auto" else text


def add_device_option(parser: argparse._ActionsContainer) -> argparse.Action:
    """``--device``: where the network or the CRF runs; ``auto`` (None in the namespace) is a
    CUDA GPU if there is one, else the CPU, in every verb."""
    return parser.add_argument(
        "--device",
        type=_device,
        default="auto",
        metavar="auto|cpu|cuda|cuda:N",
        help="where to run: auto is a CUDA GPU if there is one, else the CPU",
    )


def add_workers_option(
    parser: argparse._ActionsContainer, inputs: str, default: str
) -> argparse.Action:
    """``--workers N``: processes reading and decoding the verb's input files (``inputs``:
    which; ``default``: how many the verb starts without the option)."""
    return parser.add_argument(
        "--workers",
        type=int_in(0),
        metavar="N",
        help=f"{WORKERS_MEANING} {inputs} (0: in this process; default: {default})",
    )


def add_crf_workers_option(parser: argparse._ActionsContainer, default: str) -> argparse.Action:
    """``--crf-workers N``: processes running the dense CRF on the CPU."""
    return parser.add_argument(
        "--crf-workers",
        type=int_in(0),
        metavar="N",
        help=f"processes running the CRF on the CPU (0: in this process; default: {default})",
    )


def add_crf_params_option(
    parser: argparse._ActionsContainer, presets: Iterable[str], default: str
) -> argparse.Action:
    """``--crf-params FILE|PRESET``: the CRF's settings, a JSON file or one of ``presets``."""
    return parser.add_argument(
        "--crf-params",
        metavar="FILE|PRESET",
        help="the CRF's settings: a JSON parameter file (DenseCRF.save, examples/tune_crf.py) "
        f"or a preset ({', '.join(presets)}) (default: {default})",
    )


def add_classes_option(
    parser: argparse._ActionsContainer, default: Optional[str], unset: str = ""
) -> argparse.Action:
    """``--classes NAME|FILE``: a class list by name (:data:`~deeplabv2.data.classes.CLASS_LISTS`,
    as :func:`~deeplabv2.data.classes.resolve_class_names` reads them) or a file; ``unset``:
    what no ``--classes`` means where ``default`` is None."""
    names = "|".join(CLASS_LISTS)
    return parser.add_argument(
        "--classes",
        default=default,
        metavar=f"{names}|FILE",
        help=f"the class names: {', '.join(CLASS_LISTS)} or a file with one name per line"
        " (cityscapes16 / cityscapes13: SYNTHIA -> Cityscapes' 16 and 13 classes)"
        + (f" (default: {unset})" if default is None and unset else ""),
    )


def add_weights_option(
    parser: argparse._ActionsContainer, unset: str = "", **kwargs: Any
) -> argparse.Action:
    """``--weights``: a registry name, a local file or a Hub name (``kwargs``: ``default``,
    ``required`` or ``action="append"`` as the verb needs; ``unset``: what no ``--weights``
    means where there is no ``default``)."""
    return parser.add_argument(
        "--weights",
        metavar="NAME|FILE",
        help="a registry name (deeplabv2 weights), a local file or hf-hub:OWNER/REPO[/FILE]"
        + (f" (default: {unset})" if unset else ""),
        **kwargs,
    )


#: the dialects ``--dialect`` names in its help (tests/cli/test_vocabulary.py checks them against
#: the registry, which imports torch: the help does not)
DIALECTS = ("adaptsegnet", "advent", "port", "torchvision")


def add_dialect_option(parser: argparse._ActionsContainer) -> argparse.Action:
    """``--dialect NAME``: the code base whose keys and computation a ``.pth`` file follows,
    where its keys do not say it (the UDA works' ``ResNetMulti``: docs/uda.md)."""
    return parser.add_argument(
        "--dialect",
        metavar="NAME",
        help="the code base a .pth file comes from, where its keys do not say it: "
        f"{', '.join(DIALECTS)} (default: the registry entry's, else found from the keys, "
        "with a note where two fit)",
    )


def add_force_option(parser: argparse._ActionsContainer) -> argparse.Action:
    """``--force``: overwrite outputs that exist (:data:`FORCE_HELP`)."""
    return parser.add_argument("--force", action="store_true", help=FORCE_HELP)


def add_quiet_option(parser: argparse._ActionsContainer) -> argparse.Action:
    """``--quiet``: no progress bar."""
    return parser.add_argument("--quiet", action="store_true", help="no progress bar")


class _Deprecated(argparse.Action):
    """A renamed option's old spelling: warns once per parse, then acts as the new one."""

    def __init__(self, option_strings: Sequence[str], dest: str, target: argparse.Action,
                 **kwargs: Any) -> None:  # fmt: skip
        super().__init__(
            option_strings,
            target.dest,
            nargs=target.nargs,
            const=target.const,
            type=target.type,  # type: ignore[arg-type]  # argparse's own str names
            choices=target.choices,
            metavar=target.metavar,
            default=argparse.SUPPRESS,
            help=argparse.SUPPRESS,
        )
        self.target = target

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace,
                 values: Any, option_string: Optional[str] = None) -> None:  # fmt: skip
        new = self.target.option_strings[0]
        warned = namespace.__dict__.setdefault("_deprecated_warned", set())
        if option_string not in warned:
            warned.add(option_string)
            warnings.warn(f"{option_string} is deprecated, use {new}", FutureWarning, stacklevel=2)
        self.target(parser, namespace, values, new)


def deprecate(parser: argparse._ActionsContainer, old: str, new: argparse.Action) -> None:
    """Keep ``old`` (e.g. ``--preset``) as a hidden, deprecated spelling of the option ``new``
    (the action ``add_argument`` returned): same values, same destination, one warning line."""
    parser.add_argument(old, action=_Deprecated, target=new)
