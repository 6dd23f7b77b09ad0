"""Inputs, read as the engine takes them: planes of raw pixels with their validity.

    geotiff/   any GDAL raster (GeoTIFF, COG, VRT, JPEG 2000...): one plane of its bands
    nifti/     NIfTI-1/2 volumes: slices along one axis, with 2.5D context

Which reader an input gets is decided here, by its name, once.
"""

from __future__ import annotations

from pathlib import Path

VOLUME_SUFFIXES = (".nii.gz", ".nii")
RASTER_SUFFIXES = (".tif", ".tiff", ".vrt", ".img", ".jp2")
# Files a folder input contributes when no glob is given (case-insensitive), longest first.
INPUT_SUFFIXES = VOLUME_SUFFIXES + RASTER_SUFFIXES


def is_volume(path: str | Path) -> bool:
    """NIfTI by its name; everything else goes through GDAL."""
    return str(path).lower().endswith(VOLUME_SUFFIXES)


def input_stem(path: str | Path) -> str:
    """The input's name without its (possibly double) suffix: ``ct.nii.gz`` -> ``ct``."""
    name = Path(path).name
    for ext in INPUT_SUFFIXES:
        if name.lower().endswith(ext):
            return name[: -len(ext)]
    return name
