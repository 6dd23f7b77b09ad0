"""Files that appear complete or not at all: one temporary-name scheme, atomic writes, hashing.

Every output (COG, NIfTI, JSON, HTML, label files) is written under a hidden temporary name
in its final folder and renamed into place when complete, so a crash never leaves a
truncated file under a final name. The temporary names all follow one pattern,
``.<final name>.<8 hex>.partial<ext>`` (``<ext>`` keeps the suffix GDAL or nibabel need),
which :func:`remove_partials` recognises and nothing finished ever matches.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import uuid
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

# Also the names of earlier versions (``.tmp.nii.gz``, mkstemp's ``.record.json.k3j_9x2a.partial``).
# The scene folder's completion record, written last (``pipeline.run.record``).
RECORD_NAME = "record.json"

_PARTIAL = re.compile(r"^\..+\.[0-9a-z_]{8}\.(partial|tmp)(\.[0-9a-z.]+)?$")


def temp_path(final: Path, ext: str = "") -> Path:
    """A hidden temporary name beside ``final``: never mistaken for a finished output."""
    return final.parent / f".{final.name}.{uuid.uuid4().hex[:8]}.partial{ext}"


def is_partial(name: str) -> bool:
    return bool(_PARTIAL.match(name))


def write_text_atomic(path: Path, text: str) -> Path:
    """Write ``text`` to a temporary name in the same folder, then rename it into place."""
    tmp = temp_path(path)
    try:
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


def write_json_atomic(path: Path, doc: dict[str, Any]) -> Path:
    """Write JSON atomically (see :func:`write_text_atomic`)."""
    return write_text_atomic(path, json.dumps(doc, indent=2, default=str))


def remove_partials(folder: Path) -> int:
    """Delete temporary files a killed run left in ``folder`` (never a finished output).

    Called when a scene is about to be (re)done, so nobody else is writing them.
    """
    n = 0
    if folder.is_dir():
        for p in folder.iterdir():
            if is_partial(p.name) and p.is_file():
                p.unlink(missing_ok=True)
                n += 1
    if n:
        log.info("%s: removed %d partial file(s) left by an interrupted run", folder, n)
    return n


def file_sha256(path: str | Path, chunk: int = 1 << 20) -> str:
    """Streaming sha256 of a file's bytes."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()
