"""GeoTIFF (any GDAL raster) input, through rasterio.

    info.py     the header: geometry, bands, which pixels are valid
    strips.py   parallel, block-aligned strip reads; the per-scene statistics sample; the plane source
"""

from .info import RasterInfo, open_raster, validity
from .strips import RasterSource, StripReader, sample_windows

__all__ = ["RasterInfo", "RasterSource", "StripReader", "open_raster", "sample_windows", "validity"]
