"""A GeoPackage layer written in batches of features, under a temporary name until complete.

Writing goes through GDAL's GPKG driver (pyogrio): each batch is one append (one SQLite
transaction), so memory holds one batch of features, never the layer. The file is written
as a hidden ``.partial.gpkg`` beside the final name and renamed into place by
:meth:`GpkgLayer.finish`; :meth:`GpkgLayer.abort` removes it and SQLite's side files.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from ...errors import OutputError
from ...files import temp_path
from ..base import remove

# (name, numpy dtype) of the attribute fields, in order.
FIELDS = (("class_id", "int32"), ("class_name", "object"), ("pixels", "int64"), ("area_m2", "float64"),
          ("mean_confidence", "float64"))
BATCH = 20_000  # features per append


class GpkgLayer:
    """Polygons with :data:`FIELDS`, appended in batches; ``finish`` renames the file into place."""

    def __init__(self, path: Path, crs_wkt: str | None) -> None:
        self.path, self.crs = path, crs_wkt
        self.tmp = temp_path(path, ".gpkg")
        self.count = 0
        self._rows: list[tuple[bytes, tuple[Any, ...]]] = []
        self._created = False

    def add(self, wkb: bytes, values: tuple[Any, ...]) -> None:
        self._rows.append((wkb, values))
        if len(self._rows) >= BATCH:
            self._flush()

    def finish(self) -> Path:
        self._flush(always=not self._created)  # an empty layer is still a layer
        os.replace(self.tmp, self.path)
        return self.path

    def abort(self) -> None:
        for p in (self.tmp, *(Path(f"{self.tmp}{s}") for s in ("-journal", "-wal", "-shm"))):
            remove(p)

    def _flush(self, always: bool = False) -> None:
        if not self._rows and not always:
            return
        import pyogrio.raw

        geometry = np.array([g for g, _ in self._rows], dtype=object)
        columns = list(zip(*(v for _, v in self._rows))) or [()] * len(FIELDS)
        data = [np.array(col, dtype=dt) for col, (_, dt) in zip(columns, FIELDS)]
        try:
            pyogrio.raw.write(str(self.tmp), geometry, data, [n for n, _ in FIELDS], layer=self.path.stem,
                              driver="GPKG", geometry_type="Polygon", crs=self.crs, append=self._created,
                              promote_to_multi=False)
        except Exception as exc:  # noqa: BLE001 - pyogrio's errors are its own classes
            raise OutputError(f"{self.path}: cannot write the vectors ({type(exc).__name__}: {exc})") from exc
        self._created = True
        self.count += len(self._rows)
        self._rows = []
