"""One exception hierarchy for segpipe, and the one table that says what is worth a retry.

Every error names the file it is about and says what was expected. Subclasses also
inherit the matching builtin (as rasterio's ``RasterioIOError(RasterioError, OSError)``)
so callers that only know builtins still catch them.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from contextlib import contextmanager


class SegpipeError(Exception):
    """Base of every error segpipe raises on purpose."""


class InputError(SegpipeError, ValueError):
    """The input file is unusable (not a raster/volume, corrupt, wrong bands...). Permanent."""


class CheckpointError(SegpipeError, ValueError):
    """The checkpoint is missing, corrupt, or does not match the input. Permanent."""


class OutputError(SegpipeError, OSError):
    """The output cannot be written (unwritable folder, disk full...)."""


class GeometryError(SegpipeError, RuntimeError):
    """A written output's geometry differs from its input's. Permanent (a bug or a bad header)."""


class ConfigError(SegpipeError, ValueError):
    """Bad settings (tile size, overlap, job config). Permanent."""


class TransientError(SegpipeError, RuntimeError):
    """Something that may succeed when tried again (I/O hiccup, device out of memory)."""


class SegpipeWarning(UserWarning):
    """Degraded-but-usable input (no CRS, no valid pixel, NaN values). QA collects these."""


@contextmanager
def collected_warnings() -> Iterator[list[str]]:
    """Collect the SegpipeWarning messages raised inside (for the record), then re-emit them.

    Every warning caught inside is warned again on the way out, also when the body fails,
    so callers (CLI, flows, tests) still see them; the yielded list holds the segpipe ones.
    """
    messages: list[str] = []
    caught: list[warnings.WarningMessage] = []
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", SegpipeWarning)
            yield messages
    finally:
        for w in caught:
            if issubclass(w.category, SegpipeWarning):
                messages.append(str(w.message))
            warnings.warn_explicit(w.message, w.category, w.filename, w.lineno, source=w.source)


# The one place that decides which failures are worth a retry. Anything not listed as
# transient is permanent: retrying bad input or a mismatched checkpoint only wastes a night.
PERMANENT: tuple[type[BaseException], ...] = (InputError, CheckpointError, ConfigError, GeometryError)


def is_transient(exc: BaseException) -> bool:
    """True when ``exc`` is worth retrying: I/O errors and CUDA out-of-memory, not bad input."""
    if isinstance(exc, PERMANENT):
        return False
    if isinstance(exc, TransientError):
        return True
    if is_out_of_memory(exc):
        return True
    # Plain OS errors (NFS hiccup, EIO, disk briefly full) but not a missing input file.
    return isinstance(exc, OSError) and not isinstance(exc, (FileNotFoundError, PermissionError, IsADirectoryError))


def is_out_of_memory(exc: BaseException) -> bool:
    """True for a device out-of-memory error (retried with half the batch size)."""
    name = type(exc).__name__
    return name == "OutOfMemoryError" or (isinstance(exc, RuntimeError) and "out of memory" in str(exc).lower())
