"""What an output is to the engine: a sink fed the fields of every finished band, in order.

A sink declares the band fields it consumes (``consumes``), so the engine produces only
what some output needs, and adding an output (vectors, say) is one class. Sinks write to
hidden temporary files (``pipeline.files``) and rename them into place in ``finish``;
``abort`` removes every trace. A :class:`SinkSet` makes a run's sinks all or none, and
finishes them all or none.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Protocol

from ..engine.bands import Band, BandField

log = logging.getLogger(__name__)


class Sink(Protocol):
    """One output (or one family of outputs) of a run."""

    consumes: tuple[BandField, ...]

    def write(self, band: Band) -> None: ...

    def finish(self) -> dict[str, Path]: ...

    def abort(self) -> None:
        """Remove every temporary file, and the outputs ``finish`` already put in place."""


class RowTarget(Protocol):
    """A file written row band by row band (``pipeline.sinks.geotiff.GeoTiffSink``)."""

    def write(self, row0: int, rows: Any) -> None: ...

    def finish(self) -> Path: ...

    def abort(self) -> None: ...


class FieldSink:
    """Feeds one band field to a row-wise file: ``target.write(band.row0, band.<field>)``."""

    def __init__(self, name: str, field: BandField, target: RowTarget) -> None:
        self.name, self.field, self.target = name, field, target
        self.consumes: tuple[BandField, ...] = (field,)
        self._done: Path | None = None

    def write(self, band: Band) -> None:
        self.target.write(band.row0, getattr(band, self.field))

    def finish(self) -> dict[str, Path]:
        self._done = self.target.finish()
        return {self.name: self._done}

    def abort(self) -> None:
        self.target.abort()
        if self._done is not None:
            remove(self._done)


class SinkSet:
    """A run's sinks, made all or none (one that cannot be created aborts those already made)."""

    def __init__(self, makers: Sequence[Callable[[], Sink]]) -> None:
        self.sinks: list[Sink] = []
        try:
            for make in makers:
                self.sinks.append(make())
        except BaseException:
            self.abort()
            raise

    @property
    def consumes(self) -> set[str]:
        return {f for s in self.sinks for f in s.consumes}

    def write(self, band: Band) -> None:
        for sink in self.sinks:
            sink.write(band)

    def finish(self) -> dict[str, Path]:
        """Every output, renamed into place; if one fails, the others are removed too."""
        outputs: dict[str, Path] = {}
        try:
            for sink in self.sinks:
                outputs.update(sink.finish())
        except BaseException:
            self.abort()
            raise
        return outputs

    def abort(self) -> None:
        """Remove every temporary file and every output already finished (safe to repeat)."""
        for sink in self.sinks:
            sink.abort()


def remove(path: Path) -> None:
    """Delete ``path`` if it is there; a failure is logged, not raised (cleanup never masks the error)."""
    try:
        path.unlink(missing_ok=True)
    except OSError as exc:  # leave it, but say so
        log.warning("could not remove %s: %s", path, exc)
