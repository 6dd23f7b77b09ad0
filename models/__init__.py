"""Networks and checkpoints: build smp models, save/load self-describing .safetensors files.

``models`` may import ``pipeline`` (for ``ModelSpec`` and the errors); ``pipeline`` never
imports ``models``, and nothing here imports prefect. The names below are imported on
first use (PEP 562), so ``models.cli`` builds its parser without importing torch or smp.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import pipeline  # noqa: F401 - first, before torch: its CPU thread and allocation settings (pipeline/__init__.py)
from pipeline.lazy import lazy_exports

_EXPORTS = {
    "FORMAT_VERSION": "checkpoint", "LoadedModel": "checkpoint", "import_state_dict": "checkpoint",
    "load_checkpoint": "checkpoint", "read_metadata": "checkpoint", "save_checkpoint": "checkpoint",
    "file_sha256": "checkpoint", "describe": "info", "build_model": "unet",
}

__all__ = sorted(_EXPORTS)


__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)


if TYPE_CHECKING:
    from .checkpoint import (FORMAT_VERSION, LoadedModel, file_sha256, import_state_dict, load_checkpoint,
                             read_metadata, save_checkpoint)
    from .info import describe
    from .unet import build_model
