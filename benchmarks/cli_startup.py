"""Start-up time of the command line and of ``import deeplabv2``.

Median wall time (over ``--runs`` runs, each in a fresh interpreter) of ``deeplabv2 --help``,
``deeplabv2 predict --help``, ``deeplabv2 weights`` and of the imports
``import deeplabv2`` and ``import deeplabv2, deeplabv2.models``; the verbs run as
``python -c "...main([...])"`` so that the figures do not depend on the installed script. The
package is the one under ``--root`` (default: this checkout), put first on ``PYTHONPATH``; the
last column says whether the run loaded torch.

    python benchmarks/cli_startup.py [--runs 5] [--root PATH]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

#: label -> Python code run by a fresh interpreter
CASES = {
    "deeplabv2 --help": "cli(['--help'])",
    "deeplabv2 predict --help": "cli(['predict', '--help'])",
    "deeplabv2 weights": "cli(['weights'])",
    "import deeplabv2": "import deeplabv2",
    "import deeplabv2, deeplabv2.models": "import deeplabv2, deeplabv2.models",
}

_PRELUDE = (
    "import sys\n"
    "def cli(argv):\n"
    "    from deeplabv2.cli.main import main\n"
    "    try:\n"
    "        main(argv)\n"
    "    except SystemExit:\n"
    "        pass\n"
)
_EPILOGUE = "\nprint('torch' in sys.modules, file=sys.stderr)\n"


def time_case(code: str, root: Path) -> tuple[float, bool]:
    """Seconds one fresh interpreter takes to run ``code``; whether it loaded torch."""
    env = {**os.environ, "PYTHONPATH": f"{root}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    start = time.perf_counter()
    run = subprocess.run(
        [sys.executable, "-c", _PRELUDE + code + _EPILOGUE],
        env=env,
        cwd=root,  # python -c puts the working directory first on sys.path
        capture_output=True,
        text=True,
        check=True,
    )
    elapsed = time.perf_counter() - start
    return elapsed, run.stderr.strip().splitlines()[-1] == "True"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=5, help="runs per case (5)")
    parser.add_argument(
        "--root", type=Path, default=Path(__file__).resolve().parents[1], help="the checkout"
    )
    args = parser.parse_args()
    print(f"{'command':<36} {'median s':>9} {'min s':>7}  torch")
    for label, code in CASES.items():
        times, torch_loaded = [], False
        for _ in range(args.runs):
            seconds, torch_loaded = time_case(code, args.root)
            times.append(seconds)
        print(
            f"{label:<36} {statistics.median(times):>9.2f} {min(times):>7.2f}  "
            f"{'yes' if torch_loaded else 'no'}"
        )


if __name__ == "__main__":
    main()
