"""A scene's header: geometry, bands, validity rule, read once and checked.

Validity: nodata values, an internal/sidecar mask (``.msk``), an alpha band and
non-finite floats all make a pixel invalid. Invalid pixels are never predicted on.
"""


from __future__ import annotations

import logging
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import rasterio
from affine import Affine
from rasterio.crs import CRS
from rasterio.enums import MaskFlags
from rasterio.errors import RasterioIOError

from ...errors import InputError, SegpipeWarning, TransientError
from ..dicom import dicom_message, is_dicom
from ..vsi import InputPath, as_input, is_gdal_path, is_network, opening, shown

log = logging.getLogger(__name__)

MaskKind = str  # "none" | "nodata" | "dataset" (internal .msk or alpha band)


@dataclass(frozen=True)
class RasterInfo:
    """A scene's geometry and the facts the engine needs, read once from its header."""

    path: InputPath  # a local Path, or a GDAL virtual path kept as the str it was given
    width: int
    height: int
    count: int
    bands: tuple[int, ...]
    dtype: str
    crs: CRS | None
    transform: Affine
    nodata: float | None
    block_shape: tuple[int, int]
    mask_kind: MaskKind
    driver: str

    @property
    def crs_wkt(self) -> str | None:
        return self.crs.to_wkt() if self.crs else None


def open_raster(path: str | Path, bands: tuple[int, ...] | None = None) -> RasterInfo:
    """Read and check a raster's header. ``bands`` are 1-based; ``None`` means all bands.

    A GDAL virtual path (``/vsizip/``, ``/vsis3/``...) goes to GDAL as it is; only a local
    path is checked for existence and for being DICOM first.
    """
    path = as_input(path)
    if not is_gdal_path(path):
        if is_dicom(path):
            raise InputError(dicom_message(path))
        if not Path(path).exists():
            raise InputError(f"{path}: file not found; expected a GeoTIFF or other GDAL raster")
    try:
        with opening(path), rasterio.open(path) as ds:
            return _info(ds, path, bands)
    except RasterioIOError as exc:
        raise open_error(path, exc) from exc


def open_error(path: InputPath, exc: Exception) -> Exception:
    """The error for a raster GDAL cannot open or read: permanent, except a network failure (retried)."""
    line, name = first_line(exc), shown(path)
    if is_network(path) and not any(s in line for s in ("HTTP response code: 4", "does not exist", "not recognized")):
        return TransientError(f"{name}: cannot be read over the network ({line}); retried later")
    hint = "" if not is_gdal_path(path) else "; check the path and GDAL's credentials (docs/operations.md)"
    return InputError(f"{name}: not a readable raster ({line}); expected a GeoTIFF or other GDAL raster{hint}")


def read_error(path: InputPath, what: str, exc: Exception) -> Exception:
    """The error for a failed pixel read: a corrupt file is permanent, a network failure is retried."""
    if is_network(path):
        return TransientError(f"{shown(path)}: cannot read {what} over the network ({first_line(exc)}); retried later")
    return InputError(f"{shown(path)}: cannot read {what} (corrupt or truncated file?): {first_line(exc)}")


def _info(ds: rasterio.DatasetReader, path: InputPath, bands: tuple[int, ...] | None) -> RasterInfo:
    bands = tuple(bands) if bands else tuple(range(1, ds.count + 1))
    if max(bands) > ds.count:
        raise InputError(
            f"{shown(path)}: has {ds.count} band(s) but the model reads bands {list(bands)}; "
            "use a checkpoint made for this sensor or re-order the bands"
        )
    dtypes = {ds.dtypes[b - 1] for b in bands}
    dtype = str(np.result_type(*dtypes))
    if np.dtype(dtype).kind == "c":
        raise InputError(f"{shown(path)}: complex pixel type {dtype} not supported; expected real-valued bands")
    flags = [ds.mask_flag_enums[b - 1] for b in bands]
    if any(MaskFlags.per_dataset in f or MaskFlags.alpha in f for f in flags):
        mask_kind = "dataset"
    elif any(MaskFlags.nodata in f for f in flags):
        mask_kind = "nodata"
    else:
        mask_kind = "none"
    crs = ds.crs if ds.crs else None
    if crs is None:
        warnings.warn(f"{shown(path)}: has no CRS; the output keeps the pixel grid but is not georeferenced",
                      SegpipeWarning, stacklevel=3)
    return RasterInfo(
        path=path, width=ds.width, height=ds.height, count=ds.count, bands=bands, dtype=dtype,
        crs=crs, transform=ds.transform, nodata=ds.nodata, block_shape=tuple(ds.block_shapes[bands[0] - 1]),
        mask_kind=mask_kind, driver=ds.driver,
    )


def first_line(exc: BaseException) -> str:
    return str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__


def validity(data: np.ndarray, info: RasterInfo, dataset_mask: np.ndarray | None,
             any_band: bool = False) -> np.ndarray:
    """(h, W) bool: which pixels hold data.

    A pixel is nodata where *every* selected band holds the nodata value, as GDAL's dataset
    mask has it (``any_band``: where any band does, the stricter rule); an internal or
    sidecar mask (``.msk``) or an alpha band marks it invalid; and so does a NaN/Inf in any
    band, which the model cannot take.
    """
    valid = np.ones(data.shape[1:], dtype=bool)
    if info.mask_kind == "nodata" and info.nodata is not None:
        is_nodata = np.isnan(data) if np.isnan(info.nodata) else data == np.asarray(info.nodata, dtype=data.dtype)
        valid &= ~(is_nodata.any(axis=0) if any_band else is_nodata.all(axis=0))
    if dataset_mask is not None:
        valid &= dataset_mask > 0
    if data.dtype.kind == "f":
        valid &= np.isfinite(data).all(axis=0)
    return valid
