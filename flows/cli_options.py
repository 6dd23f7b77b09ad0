"""Command-line flags generated from the run options' one declaration (``pipeline.options.RunOptions``).

Each field becomes ``--field-name``: a bool a switch, a ``Literal`` a choice, an int an int.
Defaults stay unset (None) on the command line, so only the flags a user gives override a
job file, and validation happens once, in the model, with its one-line errors.
"""

from __future__ import annotations

import argparse
import types
import typing
from typing import Any, Literal

from pydantic.fields import FieldInfo


def add_model_flags(p: argparse.ArgumentParser, fields: dict[str, FieldInfo], *, switch_default: Any = None) -> None:
    """One flag per field: ``--tile N``, ``--tta``, ``--blend {constant,gaussian,hann}``..."""
    for name, info in fields.items():
        flag = "--" + name.replace("_", "-")
        ann = _unwrap(info.annotation)
        help_ = _help(info)
        if ann is bool:
            p.add_argument(flag, action="store_true", default=switch_default, help=help_)
        elif typing.get_origin(ann) is Literal:
            choices = list(typing.get_args(ann))
            kind = type(choices[0])
            p.add_argument(flag, type=kind, choices=choices, default=None, help=help_)
        else:
            p.add_argument(flag, type=ann if ann in (int, float) else str, default=None, help=help_)


def given(args: argparse.Namespace, fields: dict[str, FieldInfo]) -> dict[str, Any]:
    """The fields set on the command line (absent flags are None, absent switches too)."""
    return {k: getattr(args, k) for k in fields if getattr(args, k, None) is not None}


def _unwrap(ann: Any) -> Any:
    """``int | None`` -> int; ``Literal[...] | None`` -> the Literal."""
    if isinstance(ann, types.UnionType) or typing.get_origin(ann) is typing.Union:
        rest = [a for a in typing.get_args(ann) if a is not type(None)]
        return rest[0] if len(rest) == 1 else str
    return ann


def _help(info: FieldInfo) -> str:
    text = info.description or ""
    default = info.default
    if default not in (None, False) and "default" not in text:
        text += f" (default {default})"
    return text
