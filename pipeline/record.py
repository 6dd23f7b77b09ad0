"""Per-scene completion records (``record.json``) and the facts they hold.

The record is written last, atomically: a scene folder without one is unfinished.
Batch re-runs compare its input hash, model hash and settings to decide what to redo.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import platform
import re
import resource
import sys
import tempfile
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from . import __version__

log = logging.getLogger(__name__)

RECORD_NAME = "record.json"
RECORD_VERSION = 1


def file_sha256(path: str | Path, chunk: int = 1 << 20) -> str:
    """Streaming sha256 of a file's bytes."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


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
    RunSettings, whose fingerprint decides whether a later run may skip the input.
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


def write_text_atomic(path: Path, text: str) -> Path:
    """Write ``text`` under a hidden ``.partial`` name in the same folder, then rename into place.

    A crash leaves only the ``.partial`` file (removed by :func:`remove_partials`), never a
    truncated file under the final name.
    """
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".partial", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def write_json_atomic(path: Path, doc: dict[str, Any]) -> Path:
    """Write JSON atomically (see :func:`write_text_atomic`)."""
    return write_text_atomic(path, json.dumps(doc, indent=2, default=str))


# Hidden temporary names the engine writes before renaming (``.x_mask.tif.1a2b3c4d.partial.tif``
# for rasters, ``.x_labels.nii.gz.1a2b3c4d.tmp.nii.gz`` for volumes, ``.record.json.xyz.partial``).
_TEMP_MARK = re.compile(r"\.[0-9a-z_]+\.(partial|tmp)(\.|$)|\.partial$")


def remove_partials(scene_dir: Path) -> int:
    """Delete temporary files a killed run left in the scene folder (never a finished output).

    Called when a scene is about to be (re)done, so nobody else is writing them.
    """
    n = 0
    if scene_dir.is_dir():
        for p in scene_dir.iterdir():
            if p.name.startswith(".") and _TEMP_MARK.search(p.name) and p.is_file():
                p.unlink(missing_ok=True)
                n += 1
    if n:
        log.info("%s: removed %d partial file(s) left by an interrupted run", scene_dir, n)
    return n


def read_record(scene_dir: Path) -> dict[str, Any] | None:
    """The scene's completion record, or None when missing or unreadable (= unfinished)."""
    try:
        with open(scene_dir / RECORD_NAME) as f:
            doc = json.load(f)
    except (OSError, ValueError):
        return None
    return doc if doc.get("status") == "complete" else None
