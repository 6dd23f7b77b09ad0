"""The next volume of a batch, decoding while the current one is segmented.

A batch on a GPU is bounded by decoding, one volume after another (inflating a ``.nii.gz``
is one core's work). The batch owns a :class:`ReadAhead`, starts the next input on it
before it runs this one, and passes it to ``segment_file``, which takes the volume when it
is the one it needs: same file, unchanged (size and mtime), same slice axis.
"""

from __future__ import annotations

import threading
import warnings
from dataclasses import dataclass
from pathlib import Path

from ...errors import SegpipeError
from .decode import open_streamed
from .volume import Volume


@dataclass
class _Slot:
    key: tuple[str, int, int]
    slice_axis: int | None
    volume: Volume
    warnings: list[warnings.WarningMessage]


class ReadAhead:
    """One slot for the next volume of a batch (thread-safe; the batch owns it)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._slot: _Slot | None = None

    def start(self, path: str | Path, *, slice_axis: int | None = None) -> bool:
        """Start decoding ``path`` now. Replaces (and stops) a read-ahead nobody took.

        Nothing happens, False, for a file that cannot stream or cannot be read: the run
        itself reports that, in its own words. Warnings about the file are kept and given
        again when the volume is taken.
        """
        key = _stat_key(Path(path))
        if key is None:
            return False
        try:
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                vol = open_streamed(path, slice_axis=slice_axis)
        except SegpipeError:
            return False
        if vol is None:
            return False
        self._replace(_Slot(key, slice_axis, vol, list(caught)))
        return True

    def take(self, path: str | Path, slice_axis: int | None) -> Volume | None:
        """The volume started for ``path`` (same file, unchanged; same slice axis), or None."""
        key = _stat_key(Path(path))
        with self._lock:
            slot = self._slot
            if slot is None or key is None or slot.key != key or slot.slice_axis != slice_axis:
                return None
            self._slot = None
        for w in slot.warnings:  # in the run's own warning capture now
            warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
        return slot.volume

    def close(self) -> None:
        """Stop a read-ahead nobody took (the batch is over)."""
        self._replace(None)

    def _replace(self, slot: _Slot | None) -> None:
        with self._lock:
            old, self._slot = self._slot, slot
        if old is not None and old.volume.arrival is not None:
            old.volume.arrival.cancel()


def _stat_key(path: Path) -> tuple[str, int, int] | None:
    try:
        st = path.stat()
    except OSError:
        return None
    return str(path.resolve()), st.st_size, st.st_mtime_ns
