"""Files that appear complete or not at all: one temporary-name scheme, atomic writes, hashing.

Every output (COG, NIfTI, JSON, HTML, label files) is written under a hidden temporary name
in its final folder and renamed into place when complete, so a crash never leaves a
truncated file under a final name. The temporary names all follow one pattern,
``.<final name>.<8 hex>.partial<ext>`` (``<ext>`` keeps the suffix GDAL or nibabel need),
which :func:`remove_partials` recognises and nothing finished ever matches.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import logging
import os
import re
import socket
import time
import uuid
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

# Also the names of earlier versions (``.tmp.nii.gz``, mkstemp's ``.record.json.k3j_9x2a.partial``).
# The scene folder's completion record, written last (``pipeline.run.record``).
RECORD_NAME = "record.json"
# The output root's bookkeeping folder: locks, staging folders, failure records, QA history.
STATE = ".segpipe"

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


class FileLock:
    """An exclusive ``flock`` on ``path`` (created if missing) that names its holder inside.

    The kernel releases it when the holding process ends, however it ends: a killed run
    never leaves a stale lock behind.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._fd: int | None = None

    def acquire(self, wait_s: float = 0.0) -> bool:
        """Take the lock, waiting up to ``wait_s`` seconds; False if another process holds it."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        deadline = time.monotonic() + wait_s
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    os.close(fd)
                    return False
                time.sleep(0.2)
        os.ftruncate(fd, 0)
        os.write(fd, json.dumps({"pid": os.getpid(), "host": socket.gethostname(),
                                 "since": time.strftime("%Y-%m-%dT%H:%M:%S%z")}).encode())
        self._fd = fd
        return True

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing the descriptor releases the lock
            self._fd = None

    def holder(self) -> str:
        """Who holds the lock, as its holder wrote it (best effort)."""
        try:
            h = json.loads(self.path.read_text() or "{}")
            return f"pid {h['pid']} on {h['host']} since {h['since']}"
        except (OSError, ValueError, KeyError):
            return "another process"
