"""Per-scene completion records (``record.json``) and the facts they hold.

The record is written last, atomically: a scene folder without one is unfinished.
Batch re-runs compare its input hash, model hash and settings to decide what to redo.
"""

from __future__ import annotations

import json
import logging
import platform
import resource
import sys
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from .. import __version__

log = logging.getLogger(__name__)

from ..files import RECORD_NAME

__all__ = ["RECORD_NAME", "completion_record", "peak_rss_mb", "read_record", "versions"]
RECORD_VERSION = 1


def versions() -> dict[str, str]:
    """Versions of everything that can change an output."""
    import numpy
    import rasterio
    import torch

    out = {
        "segpipe": __version__, "python": platform.python_version(), "torch": torch.__version__,
        "numpy": numpy.__version__, "rasterio": rasterio.__version__, "gdal": rasterio.__gdal_version__,
    }
    for mod in ("segmentation_models_pytorch", "nibabel"):
        m = sys.modules.get(mod)
        if m is not None:
            out[mod] = getattr(m, "__version__", "?")
    return out


def peak_rss_mb() -> float:
    """Peak resident memory of this process so far, in MiB.

    ``/proc/self/status`` VmHWM where there is one: ``ru_maxrss`` survives ``execve``, so a
    child started by a big parent would report the parent's peak.
    """
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def completion_record(kind: str, input_path: Path, input_sha: str, input_facts: dict[str, Any], model: Any,
                      settings: Any, outputs: dict[str, Path], facts: dict[str, Any], timings: dict[str, float],
                      warnings: list[str], started: str, **extra: Any) -> dict[str, Any]:
    """The ``record.json`` document of a finished input (scene or volume).

    ``model`` is a loaded checkpoint (module, spec, sha256, path); ``settings`` the resolved
    RunOptions, whose fingerprint decides whether a later run may skip the input.
    """
    return {
        "record_version": RECORD_VERSION,
        "status": "complete",
        "kind": kind,
        "input": {"path": str(input_path.resolve()), "sha256": input_sha, "size_bytes": input_path.stat().st_size,
                  **input_facts},
        "model": {
            "path": str(model.path), "sha256": model.sha256, "class_names": list(model.spec.class_names),
            "class_colors": [list(c) for c in model.spec.colors()], "spec": model.spec.to_dict(),
        },
        "settings": settings.to_dict(),
        "fingerprint": settings.fingerprint(),
        "outputs": {name: p.name for name, p in outputs.items()},
        "facts": facts,
        "timings": timings,
        "warnings": warnings,
        "versions": versions(),
        "started": started,
        "finished": datetime.now(timezone.utc).isoformat(),
        **extra,
    }


def read_record(scene_dir: Path) -> dict[str, Any] | None:
    """The scene's completion record, or None when missing or unreadable (= unfinished)."""
    try:
        with open(scene_dir / RECORD_NAME) as f:
            doc = json.load(f)
    except (OSError, ValueError):
        return None
    return doc if doc.get("status") == "complete" else None
