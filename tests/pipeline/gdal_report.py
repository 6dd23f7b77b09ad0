"""What GDAL itself reports of a raster band (``gdalinfo``'s facts), for tests.

GDAL's Python bindings are not installed; these call the GDAL library rasterio loaded,
through ctypes, so the tests see exactly what GDAL (and so QGIS) reads: category names,
the colour table's size, the raster attribute table.
"""

from __future__ import annotations

import ctypes
from typing import Any

from pipeline import gdal_lib

_P, _S = ctypes.c_void_p, ctypes.c_char_p
_SIGS = {
    "GDALOpen": (_P, [_S, ctypes.c_int]), "GDALClose": (None, [_P]), "GDALGetRasterBand": (_P, [_P, ctypes.c_int]),
    "GDALGetRasterColorTable": (_P, [_P]), "GDALGetColorEntryCount": (ctypes.c_int, [_P]),
    "GDALGetRasterCategoryNames": (ctypes.POINTER(_S), [_P]), "GDALGetDefaultRAT": (_P, [_P]),
    "GDALRATGetRowCount": (ctypes.c_int, [_P]), "GDALRATGetColumnCount": (ctypes.c_int, [_P]),
    "GDALRATGetNameOfCol": (_S, [_P, ctypes.c_int]), "GDALRATGetUsageOfCol": (ctypes.c_int, [_P, ctypes.c_int]),
    "GDALRATGetValueAsString": (_S, [_P, ctypes.c_int, ctypes.c_int]),
}


def band_report(path: str, band: int = 1) -> dict[str, Any]:
    """{"colors": n entries or None, "categories": [...], "rat": {"columns": [(name, usage)], "rows": [[...]]}}."""
    lib = ctypes.CDLL(gdal_lib._library_path())
    for name, (res, args) in _SIGS.items():
        getattr(lib, name).restype, getattr(lib, name).argtypes = res, args
    lib.GDALAllRegister()
    ds = lib.GDALOpen(str(path).encode(), 0)
    assert ds, f"GDAL cannot open {path}"
    try:
        b = lib.GDALGetRasterBand(ds, band)
        ct = lib.GDALGetRasterColorTable(b)
        names, cats = [], lib.GDALGetRasterCategoryNames(b)
        while cats and cats[len(names)] is not None:
            names.append(cats[len(names)].decode())
        rat, table = lib.GDALGetDefaultRAT(b), None
        if rat:
            ncol = lib.GDALRATGetColumnCount(rat)
            table = {"columns": [(lib.GDALRATGetNameOfCol(rat, j).decode(), lib.GDALRATGetUsageOfCol(rat, j))
                                 for j in range(ncol)],
                     "rows": [[lib.GDALRATGetValueAsString(rat, r, j).decode() for j in range(ncol)]
                              for r in range(lib.GDALRATGetRowCount(rat))]}
        return {"colors": lib.GDALGetColorEntryCount(ct) if ct else None, "categories": names, "rat": table}
    finally:
        lib.GDALClose(ds)
