"""Networks and checkpoints: build smp models, save/load self-describing .safetensors files.

``models`` may import ``pipeline`` (for ``ModelSpec`` and the errors); ``pipeline`` never
imports ``models``, and nothing here imports prefect.
"""

import pipeline  # noqa: F401 - first, before torch: its CPU thread and allocation settings (pipeline/__init__.py)
from .checkpoint import (
    FORMAT_VERSION,
    LoadedModel,
    describe,
    file_sha256,
    import_state_dict,
    load_checkpoint,
    read_metadata,
    save_checkpoint,
)
from .unet import build_model

__all__ = [
    "FORMAT_VERSION",
    "LoadedModel",
    "build_model",
    "describe",
    "file_sha256",
    "import_state_dict",
    "load_checkpoint",
    "read_metadata",
    "save_checkpoint",
]
