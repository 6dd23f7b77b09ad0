"""The vector sink: finished bands -> complete regions -> features of ``NAME_vectors.gpkg``.

Polygonising runs in a thread of its own (``segpipe-vectors``) fed by the writer thread, as
the mode overviews are, so the writer keeps pace with the model. Each complete region
becomes one feature in the mask's CRS: ``class_id``, ``class_name``, ``pixels``, ``area_m2``
and ``mean_confidence`` (0..1). The area is the region's pixels': on a projected CRS the
pixel area (in m2, from the CRS's unit) times the count, exact; on a geographic CRS the
ellipsoidal area of the region's outline (``pyproj.Geod.geometry_area_perimeter`` on the
CRS's own ellipsoid); without a CRS, NULL. Simplification (``vector_simplify``, in pixels,
topology-preserving per polygon) changes the outline only, never the area, and is applied
after it is measured.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import shapely
from affine import Affine
from rasterio.crs import CRS
from shapely.geometry.polygon import orient

from ...engine.bands import PROB_SCALE, Band, BandField
from ...threads import Consumer
from .gpkg import GpkgLayer
from .regions import Region, RegionTracker


class Area:
    """A region's area in m2 from its pixel count (projected CRS) or its outline (geographic CRS)."""

    def __init__(self, crs: CRS | None, transform: Affine) -> None:
        self.transform = transform
        self.geod = None
        self.pixel_m2: float | None = None
        if crs is None:
            return
        if crs.is_geographic:
            from pyproj import CRS as ProjCRS

            self.geod = ProjCRS.from_wkt(crs.to_wkt()).get_geod()
        else:
            _, factor = crs.linear_units_factor  # metres per CRS unit (a US survey foot: 0.3048006)
            self.pixel_m2 = abs(transform.determinant) * factor * factor

    def m2(self, pixels: int, outline: shapely.Geometry) -> float:
        """``outline`` in map coordinates; NaN (NULL in the file) without a CRS."""
        if self.pixel_m2 is not None:
            return pixels * self.pixel_m2
        if self.geod is not None:
            return abs(self.geod.geometry_area_perimeter(orient(outline, 1))[0])
        return float("nan")


class VectorSink:
    """``NAME_vectors.gpkg``: one polygon per connected region of the vectorised classes."""

    consumes: tuple[BandField, ...] = ("labels", "confidence")

    def __init__(self, path: Path, crs: CRS | None, transform: Affine, class_names: Sequence[str],
                 classes: Sequence[int], *, simplify: float = 0.0, min_area: float = 0.0) -> None:
        self.path, self.names, self.classes = path, tuple(class_names), tuple(classes)
        self.transform, self.simplify, self.min_area = transform, simplify, min_area
        self.area = Area(crs, transform)
        self.layer = GpkgLayer(path, crs.to_wkt() if crs else None)
        self.tracker = RegionTracker(classes)
        self.features: Counter[str] = Counter()
        self.dropped = 0
        self._done: Path | None = None
        self._thread: Consumer[Band] = Consumer(self._band, role="vectors", maxsize=2)

    def write(self, band: Band) -> None:
        self._thread.put(band)  # band arrays are never modified once finished

    def _band(self, band: Band) -> None:
        for region in self.tracker.add(band.row0, band.labels, band.confidence):
            self._emit(region)

    def _emit(self, region: Region) -> None:
        pixel_outline = region.polygon(self.tracker.seams)
        outline = shapely.transform(pixel_outline, self._to_map)
        area = self.area.m2(region.pixels, outline)
        if self.min_area and (area if area == area else region.pixels) < self.min_area:  # NaN: no CRS, pixels
            self.dropped += 1
            return
        if self.simplify:
            outline = shapely.transform(shapely.simplify(pixel_outline, self.simplify), self._to_map)
        name = self.names[region.cls] if region.cls < len(self.names) else f"class_{region.cls}"
        mean = region.confidence / region.pixels / PROB_SCALE if region.pixels else float("nan")
        self.layer.add(shapely.to_wkb(outline), (region.cls, name, region.pixels, area, mean))
        self.features[name] += 1

    def _to_map(self, xy: np.ndarray) -> np.ndarray:
        t = self.transform
        return np.column_stack([t.a * xy[:, 0] + t.b * xy[:, 1] + t.c, t.d * xy[:, 0] + t.e * xy[:, 1] + t.f])

    def finish(self) -> dict[str, Path]:
        try:
            self._thread.close()
            for region in self.tracker.finish():
                self._emit(region)
            self._done = self.layer.finish()
        except BaseException:
            self.abort()
            raise
        return {"vectors": self._done}

    def abort(self) -> None:
        self._thread.close(abort=True)
        self.layer.abort()
        if self._done is not None:
            self._done.unlink(missing_ok=True)

    def facts(self) -> dict[str, Any]:
        """What the record keeps: features per class (every vectorised class, 0 included)."""
        per_class = {self.names[c] if c < len(self.names) else f"class_{c}": 0 for c in self.classes}
        per_class.update(self.features)
        return {"features": sum(self.features.values()), "features_per_class": per_class,
                "left_out_below_min_area": self.dropped, "classes": list(per_class)}
