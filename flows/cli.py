"""The ``segpipe`` command. Each sub-command lives in its own module with a ``register``.

Errors the user can fix are printed as one line (``segpipe: error: ...``), exit code 2;
anything unexpected is an internal error, exit code 1 (traceback with ``-v``).
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys

from pipeline import __version__
from pipeline.errors import SegpipeError

# Modules that add sub-commands (each has ``register(subparsers)``), in help order.
COMMAND_MODULES = (
    "flows.cli_run",
    "flows.cli_report",
    "flows.cli_batch",
    "flows.cli_deploy",
    "models.cli",
    "models.train_cli",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="segpipe", description="Segment huge GeoTIFF scenes and NIfTI volumes.")
    parser.add_argument("--version", action="version", version=f"segpipe {__version__}")
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more logging (-vv: debug)")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    level = logging.WARNING if args.verbose == 0 else logging.INFO if args.verbose == 1 else logging.DEBUG
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")
    logging.captureWarnings(True)
    try:
        return int(args.func(args) or 0)
    except SegpipeError as exc:
        print(f"segpipe: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("segpipe: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # noqa: BLE001 - last line of defence: one line, not a traceback
        if args.verbose:
            raise
        print(f"segpipe: internal error: {type(exc).__name__}: {exc} (run with -v for the traceback)", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
