"""Networks and checkpoints: build smp models, save/load self-describing .safetensors files.

``models`` may import ``pipeline`` (for ``ModelSpec`` and the errors); ``pipeline`` never
imports ``models``, and nothing here imports prefect. The names below are imported on
first use (PEP 562), so ``models.cli`` builds its parser without importing torch or smp.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

import pipeline  # noqa: F401 - first, before torch: its CPU thread and allocation settings (pipeline/__init__.py)

_EXPORTS = {
    "FORMAT_VERSION": "checkpoint", "LoadedModel": "checkpoint", "import_state_dict": "checkpoint",
    "load_checkpoint": "checkpoint", "read_metadata": "checkpoint", "save_checkpoint": "checkpoint",
    "file_sha256": "checkpoint", "describe": "info", "build_model": "unet",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_EXPORTS})


if TYPE_CHECKING:
    from .checkpoint import (FORMAT_VERSION, LoadedModel, file_sha256, import_state_dict, load_checkpoint,
                             read_metadata, save_checkpoint)
    from .info import describe
    from .unet import build_model
