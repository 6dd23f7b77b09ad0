"""How much ground (m2) a pixel covers, or how much tissue (mL) a voxel holds.

Projected CRS: ``|det(transform)|`` in CRS units squared, times the unit's metres
squared (feet-based CRSs included). Geographic CRS: the determinant is in square
degrees; it is converted with metres per degree at each row's latitude (WGS84
ellipsoid series), which is close (< 0.5 % for pixels under a degree) but not exact,
so the report flags it. No CRS: areas are not computed (pixels only), also flagged.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import numpy as np
from affine import Affine
from rasterio.crs import CRS
from rasterio.errors import CRSError

from .schema import AreaInfo


@dataclass(frozen=True)
class PixelArea:
    """Area (m2) or volume (mL) of one pixel; for geographic CRSs it varies by row.

    Attributes:
        unit: "m2", "ml" or "pixel" (no physical size known).
        per_pixel: the constant size, or the size at the scene's centre for degrees.
        lat: (lat0, dlat) so that row ``r``'s centre lies at ``lat0 + dlat * (r + 0.5)``
            (geographic only); ``deg2`` the pixel's area in square degrees.
    """

    unit: Literal["m2", "ml", "pixel"]
    per_pixel: float | None
    approximate: bool = False
    note: str = ""
    lat: tuple[float, float] | None = None
    deg2: float = 0.0

    @property
    def varies_by_row(self) -> bool:
        return self.lat is not None

    def rows(self, row0: int, h: int) -> np.ndarray:
        """m2 of one pixel in each of rows ``[row0, row0 + h)`` (geographic CRS)."""
        assert self.lat is not None
        lat = self.lat[0] + self.lat[1] * (np.arange(row0, row0 + h) + 0.5)
        return self.deg2 * metres_per_degree(lat)

    def info(self) -> AreaInfo:
        return AreaInfo(unit=self.unit, per_pixel=self.per_pixel, approximate=self.approximate, note=self.note)


def metres_per_degree(lat_deg: np.ndarray | float) -> np.ndarray:
    """Metres per degree of latitude times metres per degree of longitude at ``lat_deg`` (WGS84)."""
    p = np.radians(lat_deg)
    m_lat = 111132.92 - 559.82 * np.cos(2 * p) + 1.175 * np.cos(4 * p) - 0.0023 * np.cos(6 * p)
    m_lon = 111412.84 * np.cos(p) - 93.5 * np.cos(3 * p) + 0.118 * np.cos(5 * p)
    return m_lat * np.abs(m_lon)


def pixel_area(crs: CRS | None, transform: Affine, width: int, height: int) -> PixelArea:
    """The area of a pixel of a scene with this CRS and transform (rotation terms kept)."""
    det = abs(transform.a * transform.e - transform.b * transform.d)
    if crs is None:
        return PixelArea("pixel", None, True, "no CRS: areas are not computed, only pixel counts")
    if crs.is_geographic:
        lat0 = transform.f + transform.d * width / 2.0
        lat = (lat0, transform.e)
        centre = float(det * metres_per_degree(lat0 + transform.e * height / 2.0))
        return PixelArea("m2", centre, True,
                         "geographic CRS: areas converted from square degrees with metres per degree at each "
                         "row's latitude (approximate)", lat=lat, deg2=det)
    try:
        _unit, factor = crs.linear_units_factor
    except CRSError:
        return PixelArea("pixel", None, True, f"CRS units unknown ({crs.to_string()[:60]}): no areas")
    return PixelArea("m2", det * factor * factor)


def voxel_volume(voxel_ml: float) -> PixelArea:
    """A volume's voxel size in mL (= product of the header zooms in mm / 1000)."""
    if not (voxel_ml > 0 and math.isfinite(voxel_ml)):
        return PixelArea("pixel", None, True, f"voxel volume {voxel_ml} mL is not usable: no volumes")
    return PixelArea("ml", float(voxel_ml))
