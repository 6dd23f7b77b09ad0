"""Package namespaces whose names are imported on first use (PEP 562).

A package's ``__init__`` lists ``{public name: submodule}`` and takes its module-level
``__getattr__`` and ``__dir__`` from :func:`lazy_exports`, so importing the package (to
build a CLI parser, say) does not import what its submodules need (torch, smp).
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable, Mapping
from typing import Any


def lazy_exports(package: str, exports: Mapping[str, str]) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """``(__getattr__, __dir__)`` for ``package``: a name's submodule is imported when the name
    is first read, and the value kept in the package's namespace for the next read."""

    def getattr_(name: str) -> Any:
        module = exports.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(f".{module}", package), name)
        setattr(sys.modules[package], name, value)
        return value

    def dir_() -> list[str]:
        return sorted({*vars(sys.modules[package]), *exports})

    return getattr_, dir_
