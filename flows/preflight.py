"""What would fail every scene of a batch, checked once before any scene starts.

A missing, corrupt or pickled checkpoint, a checkpoint of the wrong kind for the inputs, or
an output root this user cannot write would fail each scene in turn (and leave an error
per scene, or retry each one); instead the batch stops at once with one line naming what
is wrong, and ``segpipe batch`` exits 2 with nothing run.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

from pipeline.errors import OutputError
from pipeline.files import STATE
from pipeline.readers import is_volume
from pipeline.run.layer import check_model_kind

from .inputs import ScenePlan
from .scenes import get_model

log = logging.getLogger(__name__)


def preflight(model_path: str | Path, out: str | Path, plans: list[ScenePlan], *, here: bool = True) -> Any:
    """Load the model (its weights verified) and check it against the inputs; check the output root.

    ``here``: the scenes run in this process, which keeps the model for them
    (``flows.scenes.get_model``); else (a cluster's workers load their own) it is loaded,
    checked and dropped.
    """
    if here:
        model = get_model(model_path)
    else:
        from models.checkpoint import load_checkpoint

        model = load_checkpoint(model_path)
    kinds: dict[str, ScenePlan] = {}
    for p in plans:
        kinds.setdefault("volume" if is_volume(p.input) else "scene", p)
    for kind, first in kinds.items():
        check_model_kind(model, first.input, kind)
    check_writable(Path(out))
    return model


def check_writable(out: Path) -> None:
    """The output root exists or can be made, and this user can create files in it."""
    probe = out / STATE / f".write-test-{os.getpid()}"
    try:
        probe.parent.mkdir(parents=True, exist_ok=True)
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        raise OutputError(f"{out}: output folder is not writable ({exc.strerror or exc}); "
                          "expected a folder this user can create files in") from exc
