"""Score a finished checkpoint on labelled data through the engine and add it to its card."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from models.checkpoint import load_checkpoint
from pipeline.options import RunOptions

from .card import read_card, render_markdown, write_card
from .dataset import find_pairs
from .validate import validate


def evaluate(checkpoint: str | Path, data: str | Path, *, device: str = "auto", batch_size: int = 8,
             workers: int = 2, update_card: bool = True) -> dict[str, Any]:
    """Per-class IoU/Dice of ``checkpoint`` on the pairs in ``data`` (folder or manifest).

    With ``update_card``, the result is stored as the card's ``test`` section (tied to the
    checkpoint's sha256, so a retrained model does not inherit it).
    """
    model = load_checkpoint(checkpoint, device="cpu")
    pairs = find_pairs(data)
    val = validate(model, pairs, RunOptions(device=device, batch_size=batch_size, workers=workers))
    result = {**val.to_dict(), "sha256": model.sha256, "data": str(data)}
    if update_card:
        try:
            doc = read_card(checkpoint)
        except (OSError, ValueError):
            doc = None
        if doc is not None:
            doc["test"] = result
            write_card(checkpoint, doc)
    return result


__all__ = ["evaluate", "render_markdown"]
