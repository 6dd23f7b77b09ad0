"""The ``segpipe`` command. Each sub-command lives in its own module with a ``register``.

Errors the user can fix are printed as one line (``segpipe: error: ...``), exit code 2;
anything unexpected is an internal error, exit code 1 (traceback with ``-v``). Output
cut short by a closed pipe (``segpipe model info --json | head``) ends quietly, exit 141
as for any tool a shell sees killed by SIGPIPE.

Building the parser imports no torch, smp or Prefect (each command imports them when it
runs), so ``segpipe --help`` and ``--version`` answer at once; every parser refuses
abbreviated options (``--til`` is an error, not ``--tile``) and takes ``-v``/``-q``
before or after the sub-command.
"""

from __future__ import annotations

import argparse
import importlib
import itertools
import logging
import os
import sys
from typing import Any

from pipeline import __version__
from pipeline.errors import SegpipeError

# Modules that add sub-commands (each has ``register(subparsers)``), in help order.
COMMAND_MODULES = (
    "flows.cli_run",
    "flows.cli_report",
    "flows.cli_batch",
    "flows.cli_deploy",
    "flows.cli_notify",
    "models.cli",
    "models.train_cli",
)

EXIT_BROKEN_PIPE = 141  # 128 + SIGPIPE, what a shell reports for `cat big | head`

_VERBOSE, _QUIET = "_verbose@", "_quiet@"  # one destination per parser: a sub-command's own flags
_ids = itertools.count()                  # must not overwrite those given before it


class Parser(argparse.ArgumentParser):
    """Every segpipe parser and sub-parser (``add_subparsers`` makes its children of this class).

    ``-v``/``-q`` are declared on each one, each with a destination of its own, and summed
    by the top-level parser into ``args.verbose`` / ``args.quiet``: argparse parses a
    sub-command into a fresh namespace and copies it over, which would otherwise lose a
    ``-v`` given before the sub-command.
    """

    def __init__(self, *args: Any, top: bool = False, **kwargs: Any) -> None:
        kwargs["allow_abbrev"] = False
        super().__init__(*args, **kwargs)
        self._top = top
        n = next(_ids)
        self.add_argument("-v", "--verbose", action="count", default=0, dest=f"{_VERBOSE}{n}",
                          help="more logging (-vv: debug); before or after the command")
        self.add_argument("-q", "--quiet", action="store_true", default=False, dest=f"{_QUIET}{n}",
                          help="no progress bar, errors only; before or after the command")

    def parse_known_args(self, args: Any = None, namespace: Any = None) -> tuple[argparse.Namespace, list[str]]:
        ns, rest = super().parse_known_args(args, namespace)
        if self._top:
            flags = vars(ns)
            ns.verbose = sum(flags.pop(k) for k in [k for k in flags if k.startswith(_VERBOSE)])
            ns.quiet = any([flags.pop(k) for k in [k for k in flags if k.startswith(_QUIET)]])
        return ns, rest


def versions() -> str:
    """segpipe, torch (and the CUDA it was built for), GDAL and Python versions, without importing torch."""
    torch_version, cuda = _torch_build()
    try:
        import rasterio

        gdal = f"GDAL {rasterio.__gdal_version__} (rasterio {rasterio.__version__})"
    except ImportError:
        gdal = "GDAL: rasterio not installed"
    torch_line = f"torch {torch_version} ({f'CUDA {cuda}' if cuda else 'CPU-only build'})" if torch_version \
        else "torch: not installed"
    py = ".".join(map(str, sys.version_info[:3]))
    return "\n".join((f"segpipe {__version__}", torch_line, gdal, f"Python {py}"))


def _torch_build() -> tuple[str | None, str | None]:
    """torch's version and CUDA version from ``torch/version.py``, read as text: importing torch takes seconds."""
    import ast
    import importlib.util

    spec = importlib.util.find_spec("torch")
    if spec is None or not spec.submodule_search_locations:
        return None, None
    found: dict[str, Any] = {}
    try:
        path = os.path.join(list(spec.submodule_search_locations)[0], "version.py")
        with open(path, encoding="utf-8") as f:
            tree = ast.parse(f.read())
        for node in tree.body:
            target = node.targets[0] if isinstance(node, ast.Assign) else getattr(node, "target", None)
            if isinstance(target, ast.Name) and isinstance(getattr(node, "value", None), ast.Constant):
                found[target.id] = node.value.value  # type: ignore[union-attr]
    except (OSError, SyntaxError):
        pass
    from importlib.metadata import PackageNotFoundError, version

    try:
        torch_version = found.get("__version__") or version("torch")
    except PackageNotFoundError:
        torch_version = None
    return torch_version, found.get("cuda")


class _Versions(argparse.Action):
    def __init__(self, option_strings: list[str], dest: str = argparse.SUPPRESS, **kwargs: Any) -> None:
        super().__init__(option_strings, dest, nargs=0, default=argparse.SUPPRESS, **kwargs)

    def __call__(self, parser: argparse.ArgumentParser, *args: Any) -> None:
        print(versions())
        parser.exit()


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(prog="segpipe", description="Segment huge GeoTIFF scenes and NIfTI volumes.", top=True)
    parser.add_argument("--version", action=_Versions, help="segpipe, torch/CUDA, GDAL and Python versions")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    try:
        return _main(argv)
    except BrokenPipeError:
        return _broken_pipe()


def _main(argv: list[str] | None) -> int:
    args = build_parser().parse_args(argv)
    level = logging.ERROR if args.quiet else logging.WARNING if args.verbose == 0 \
        else logging.INFO if args.verbose == 1 else logging.DEBUG
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")
    logging.captureWarnings(True)
    try:
        rc = int(args.func(args) or 0)
        sys.stdout.flush()  # a closed pipe is reported here, not at interpreter exit
        return rc
    except BrokenPipeError:
        raise
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


def _broken_pipe() -> int:
    """The reader went away: send what is still buffered to /dev/null so exit does not fail on it."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):  # stdout has no file descriptor (captured): nothing to redirect
        pass
    return EXIT_BROKEN_PIPE


if __name__ == "__main__":
    sys.exit(main())
