"""Read NIfTI volumes into canonical float32 arrays, with everything needed to go back.

``read_volume`` / ``iter_volumes`` return a :class:`Volume`: the voxels in canonical
RAS+ order (``orient.CANONICAL``) as float32 with the header's scaling applied, the
header as stored, and the orientation transform. ``pipeline.sinks.nifti.write_label_volume`` takes a
canonical array and that Volume back to disk in the input's own geometry.
Every unusable file is one ``InputError`` line naming the file and what was expected.
"""

from __future__ import annotations

import logging
import os
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import nibabel as nib
import numpy as np
from nibabel.filebasedimages import ImageFileError
from nibabel.spatialimages import HeaderDataError

from ...errors import ConfigError, InputError, SegpipeWarning
from .header import (GZIP_ERRORS, HEADER_BYTES, SeriesPolicy, check_header, gzip_error, one_line, open_nifti,
                     scaling_of, series_plan, sniff, spatial_shape, warn_geometry)
from .orient import Orientation, orientation_of
from .slicing import default_slice_axis

if TYPE_CHECKING:
    from .decode import Arrival

log = logging.getLogger(__name__)

_CHUNK_VOXELS = 1 << 24  # float64 scaling is done in chunks of about this many voxels


@dataclass(frozen=True, eq=False)
class Volume:
    """One 3D volume in canonical (RAS+) voxel order, with its way back to the file.

    Attributes:
        data: float32, canonical order, scl_slope/scl_inter applied. Indexed
            canonically; in memory slice-major along ``slice_axis`` (``np.moveaxis(data,
            slice_axis, 0)`` is C-contiguous), so slabs along that axis are cheap.
            Non-finite voxels (NaN/Inf) are replaced by the smallest finite value of the
            volume (0 when there is none) so that windowing treats them as background;
            ``valid`` says where they were.
        valid: bool mask in canonical order, False at NaN/Inf voxels; None when every
            voxel is finite (the common case, saves a byte per voxel).
        n_invalid: number of NaN/Inf voxels (reported; a SegpipeWarning was issued).
        orientation: source voxel order <-> canonical order (permutation and flips).
        zooms: voxel spacing in mm per canonical axis, from the header's pixdim.
        header: the source header as stored on disk (Nifti1Header or Nifti2Header,
            scl_slope/scl_inter included), still describing the possibly 4D file;
            writers start from a copy of it.
        affine: the source voxel-to-world affine (nibabel's best affine: sform, else qform).
        source_shape: the full shape on disk, e.g. (x, y, z), (x, y, z, 1), (x, y, z, t).
        source_dtype: stored dtype name before scaling, e.g. "int16".
        scaling: (slope, inter) applied to the stored values; (1.0, 0.0) for none.
        slice_axis: the canonical axis ``data`` is laid out for (through-plane by default).
        path: the file read.
        volume_index: which volume of a 4D series this is; None for a 3D file.
        series_note: how a 4th dimension was handled, for the output record; "" for 3D.
        arrival: None when ``data`` is complete; while a decoder thread is still filling
            it (``decode.open_streamed``), which slices along ``slice_axis`` have arrived.
    """

    data: np.ndarray
    valid: np.ndarray | None
    n_invalid: int
    orientation: Orientation
    zooms: tuple[float, float, float]
    header: nib.Nifti1Header
    affine: np.ndarray
    source_shape: tuple[int, ...]
    source_dtype: str
    scaling: tuple[float, float]
    slice_axis: int
    path: Path
    volume_index: int | None = None
    series_note: str = ""
    arrival: Arrival | None = None

    @property
    def shape(self) -> tuple[int, int, int]:
        """Canonical shape."""
        return tuple(self.data.shape)  # type: ignore[return-value]

    @property
    def canonical_affine(self) -> np.ndarray:
        return self.orientation.canonical_affine(self.affine)


# --------------------------------------------------------------------------- reading


def read_volume(path: str | os.PathLike, *, volume: int | None = None,
                series_policy: SeriesPolicy = "error", slice_axis: int | None = None) -> Volume:
    """Read one volume from a ``.nii``/``.nii.gz`` file (NIfTI-1 or NIfTI-2).

    Args:
        path: the file.
        volume: 0-based index into a 4D series (``--volume N``); implies ``select``.
        series_policy: what to do with a real 4D series (t > 1): ``error`` (default:
            never keep volume 0 silently), ``select`` (needs ``volume``). For ``each``
            use :func:`iter_volumes`.
        slice_axis: canonical axis the volume will be sliced along (``--slice-axis``);
            default: the through-plane axis (``slicing.default_slice_axis``). Only the
            memory layout depends on it (see ``Volume.slice_axis``).

    Raises:
        InputError: missing, corrupt, truncated or non-NIfTI file, 2D image, zero-size
            dimension, header/data size mismatch, or a 4D series without a policy.
    """
    if series_policy == "each":
        raise ConfigError("series_policy='each' yields several volumes: use iter_volumes()")
    return next(iter_volumes(path, volume=volume, series_policy=series_policy, slice_axis=slice_axis))


def iter_volumes(path: str | os.PathLike, *, volume: int | None = None,
                 series_policy: SeriesPolicy = "error", slice_axis: int | None = None) -> Iterator[Volume]:
    """Yield the volumes of a file: one for 3D or a selected volume, each in turn for ``each``.

    The whole file is decoded once, inside the error handling, so a truncated or corrupt
    ``.nii.gz`` fails here and not half-way through inference. Volumes of a series are
    converted to float32 one at a time (peak memory: the stored series + one volume).
    """
    path = Path(path)
    img, header, raw = _load(path)
    spatial, n_series = spatial_shape(path, raw.shape)
    raw = raw.reshape(spatial + ((n_series,) if n_series else ()))
    scaling = scaling_of(header, path)
    orientation = orientation_of(header.get_best_affine(), spatial)
    warn_geometry(path, header, orientation)
    zooms = orientation.canonical_zooms(header.get_zooms()[:3])
    axis = default_slice_axis(zooms) if slice_axis is None else slice_axis
    if axis not in (0, 1, 2):
        raise ConfigError(f"--slice-axis must be 0, 1 or 2 (canonical R, A, S), got {slice_axis}")
    plan = series_plan(path, img.shape, n_series, volume, series_policy)
    for i, (index, note) in enumerate(plan):
        vol_raw = raw if index is None else raw[..., index]
        if i == len(plan) - 1:
            raw = None  # the stored data is needed for later volumes only: not while this one runs
        vol = _make_volume(path, img, header, vol_raw, orientation, scaling, axis, index, note)
        del vol_raw
        log.debug("read %s: %s %s -> canonical %s, zooms %s, scaling %s, %s", path, vol.source_dtype,
                  orientation.source_codes, vol.shape, vol.zooms, scaling, note or "3D")
        yield vol


def _load(path: Path) -> tuple[nib.Nifti1Image, nib.Nifti1Header, np.ndarray]:
    """Open the file, read its header as stored and decode all of its data, in one pass.

    nibabel reads exactly the data bytes of a ``.nii.gz`` and stops, so it never reaches
    the gzip trailer and a corrupt member (bad CRC) goes unnoticed. Here the stream is
    read on to its end, which makes Python's gzip check CRC and length: one
    decompression, every corruption caught here. Every failure is one InputError.
    """
    if not path.exists():
        raise InputError(f"{path}: file not found; expected a NIfTI volume (.nii or .nii.gz)")
    if not path.is_file():
        raise InputError(f"{path}: not a file; expected a NIfTI volume (.nii or .nii.gz)")
    gz = path.name.lower().endswith(".nii.gz")
    if not gz and not path.name.lower().endswith(".nii"):
        raise InputError(f"{path}: expected a NIfTI file ending in .nii or .nii.gz")
    header = None
    try:
        with open_nifti(path, gz) as f:
            klass = sniff(path, f.read(HEADER_BYTES))
            f.seek(0)
            header = klass.header_class.from_fileobj(f)
            check_header(path, header)
            f.seek(0)
            holder = nib.fileholders.FileHolder(fileobj=f)
            img = klass.from_file_map({"header": holder, "image": holder}, mmap=False)
            raw = np.asarray(img.dataobj.get_unscaled())
            while f.read(1 << 20):  # to the end: gzip verifies CRC and size there
                pass
    except InputError:
        raise
    except GZIP_ERRORS as exc:
        raise gzip_error(path, exc) from exc
    except (ImageFileError, HeaderDataError) as exc:
        raise InputError(f"{path}: unreadable NIfTI header ({one_line(exc)}); expected a valid "
                         ".nii or .nii.gz volume") from exc
    except MemoryError as exc:
        shape = header.get_data_shape() if header is not None else "(unread)"
        raise InputError(f"{path}: header dimensions {shape} need more memory than this machine can allocate "
                         "to read the volume; expected a volume that fits in memory") from exc
    except (OSError, ValueError) as exc:
        shape = header.get_data_shape() if header is not None else "(unread)"
        raise InputError(f"{path}: header dimensions {shape} disagree with the data size "
                         f"({one_line(exc)}); expected a complete file") from exc
    return img, header, raw


def _make_volume(path: Path, img: nib.Nifti1Image, header: nib.Nifti1Header, raw: np.ndarray,
                 orientation: Orientation, scaling: tuple[float, float], axis: int,
                 index: int | None, note: str) -> Volume:
    data = _to_float32(orientation.to_canonical(raw), *scaling, axis=axis)
    valid, n_invalid = _replace_non_finite(data, path) if raw.dtype.kind == "f" or scaling != (1.0, 0.0) \
        else (None, 0)
    return Volume(
        data=data, valid=valid, n_invalid=n_invalid, orientation=orientation,
        zooms=orientation.canonical_zooms(header.get_zooms()[:3]),
        header=header.copy(), affine=np.array(header.get_best_affine(), dtype=float),
        source_shape=tuple(int(s) for s in img.shape), source_dtype=str(raw.dtype.newbyteorder("=")),
        scaling=scaling, slice_axis=axis, path=path, volume_index=index, series_note=note,
    )


def _to_float32(raw: np.ndarray, slope: float, inter: float, *, axis: int) -> np.ndarray:
    """float32 ``raw * slope + inter`` laid out slice-major along ``axis``.

    The result is indexed like ``raw`` (canonical) but its memory holds one contiguous
    (H, W) plane per index along ``axis``, so a slab of slices is a memcpy (a gather
    along a C-order last axis is ~6x slower). Scaling runs in float64 chunk by chunk:
    the result is the correctly rounded float32 of nibabel's own ``get_fdata()`` value,
    without a float64 copy of the whole volume.
    """
    src = np.moveaxis(raw, axis, 0)
    planes = np.empty(src.shape, dtype=np.float32)
    step = max(1, _CHUNK_VOXELS // max(1, src.shape[1] * src.shape[2]))
    scaled = (slope, inter) != (1.0, 0.0)
    buf = np.empty((step, *src.shape[1:]), dtype=np.float64) if scaled else None
    with np.errstate(over="ignore", invalid="ignore"):
        for k in range(0, src.shape[0], step):
            if buf is None:
                planes[k:k + step] = src[k:k + step]
            else:
                # Reorder to slice-major in the source dtype first (int16: a quarter of float64's
                # bytes), then scale in one reused float64 buffer: faster than scaling the strided
                # chunk into fresh temporaries (bench/RESULTS.md).
                chunk = np.ascontiguousarray(src[k:k + step])
                b = buf[: chunk.shape[0]]
                np.multiply(chunk, slope, out=b)
                b += inter
                planes[k:k + step] = b
    return np.moveaxis(planes, 0, axis)


def _replace_non_finite(data: np.ndarray, path: Path) -> tuple[np.ndarray | None, int]:
    """Replace NaN/Inf in place by the smallest finite value; return the validity mask and count."""
    finite = np.isfinite(data)
    n_invalid = int(data.size - np.count_nonzero(finite))
    if n_invalid == 0:
        return None, 0
    fill = float(data[finite].min()) if n_invalid < data.size else 0.0
    data[~finite] = fill
    warnings.warn(f"{path}: {n_invalid} NaN/Inf voxels of {data.size} are invalid; "
                  f"set to {fill:g} and left out of statistics", SegpipeWarning, stacklevel=4)
    return finite, n_invalid


