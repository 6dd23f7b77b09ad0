"""The NIfTI header, read and checked: what both volume readers (whole file, streamed) share.

Every unusable file is one ``InputError`` line naming the file and what was expected.
"""

from __future__ import annotations

import gzip
import math
import warnings
import zlib
from pathlib import Path
from typing import IO, Literal

import nibabel as nib
import numpy as np

from ...errors import ConfigError, InputError, SegpipeWarning
from .orient import Orientation

SeriesPolicy = Literal["error", "select", "each"]


def scaling_of(header: nib.Nifti1Header, path: Path | str = "") -> tuple[float, float]:
    """The (slope, inter) that turn stored values into real values, made explicit.

    Same rule as nibabel's ``get_slope_inter``: a slope of 0, NaN or +-Inf means *no*
    scaling, and then the intercept is ignored too -> (1.0, 0.0). A valid slope with a
    non-finite intercept is a corrupt header. ``header`` must be the header as stored:
    ``nib.load`` hands the scaling to its data proxy and sets the image header's
    scl_slope/scl_inter to NaN.
    """
    slope, inter = float(header["scl_slope"]), float(header["scl_inter"])
    if slope == 0 or not np.isfinite(slope):
        return 1.0, 0.0
    if not np.isfinite(inter):
        raise InputError(f"{path}: scl_slope is {slope} but scl_inter is {inter}; "
                         "expected a finite intercept (corrupt header)")
    return slope, inter


# What a damaged .nii.gz raises while it is inflated (the whole-file reader and ``stream``).
GZIP_ERRORS = (EOFError, zlib.error, gzip.BadGzipFile)


def open_nifti(path: Path, gz: bool) -> IO[bytes]:
    """The file's bytes, inflated for a ``.nii.gz``."""
    return gzip.open(path, "rb") if gz else open(path, "rb")


def gzip_error(path: Path, exc: BaseException) -> InputError:
    """The one line for a truncated or corrupt ``.nii.gz``."""
    return InputError(f"{path}: truncated or corrupt gzip data ({one_line(exc)}); "
                      "expected a complete .nii.gz (re-export or copy it again)")


HEADER_BYTES = 348  # a NIfTI-1 header; NIfTI-2 is told by its first 8 bytes


def sniff(path: Path, head: bytes) -> type[nib.Nifti1Image]:
    """NIfTI-1 or NIfTI-2 single-file image, from sizeof_hdr and the magic string."""
    if len(head) >= 8:
        size = {int.from_bytes(head[:4], "little"), int.from_bytes(head[:4], "big")}
        if 540 in size and head[4:8] == b"n+2\0":
            return nib.Nifti2Image
        if 348 in size and len(head) >= 348 and head[344:348] == b"n+1\0":
            return nib.Nifti1Image
        if 348 in size and len(head) >= 348 and head[344:348] == b"ni1\0":
            raise InputError(f"{path}: a NIfTI-1 header of a .hdr/.img pair; expected a single-file .nii")
    if head[:2] == b"\x1f\x8b":
        raise InputError(f"{path}: gzip-compressed data in a .nii file; expected plain NIfTI "
                         "(rename it to .nii.gz)")
    what = "an empty file" if not head else "not a NIfTI-1/NIfTI-2 file (no NIfTI header magic)"
    raise InputError(f"{path}: {what}; expected a .nii or .nii.gz volume")


def check_header(path: Path, header: nib.Nifti1Header) -> None:
    shape, dtype = header.get_data_shape(), header.get_data_dtype()
    if len(shape) < 3:
        raise InputError(f"{path}: a {len(shape)}D image of shape {shape}; expected a 3D volume (x, y, z)")
    if min(shape) < 1:
        what = "zero-size" if min(shape) == 0 else "negative"
        raise InputError(f"{path}: {what} dimension in shape {shape}; expected every dimension >= 1 "
                         "(corrupt header?)")
    if dtype.kind not in "biuf":
        raise InputError(f"{path}: data type {dtype} (complex/RGB/vector) is not supported; "
                         "expected a scalar intensity volume")
    need = int(header["vox_offset"]) + math.prod(int(n) for n in shape) * dtype.itemsize  # exact: no int64 wrap
    have = path.stat().st_size
    if path.name.lower().endswith(".nii"):  # cheap check before reading; .gz is checked on decode
        if have < need:
            raise InputError(f"{path}: header dimensions {shape} of {dtype} need {need} bytes but the file "
                             f"has {have}; expected a complete file (truncated copy?)")
    elif need > have * GZIP_MAX_RATIO + HEADER_BYTES:
        raise InputError(f"{path}: header dimensions {shape} of {dtype} need {_size(need)} of data, more than "
                         f"a .nii.gz of {_size(have)} can hold (gzip inflates at most {GZIP_MAX_RATIO}:1); "
                         "expected a header that matches its data (corrupt header?)")


# Deflate's largest expansion: a 258-byte match costs at least 2 bits, so one compressed
# byte inflates to at most 1032 bytes. A header that claims more than that many bytes per
# byte of file is corrupt; no allocation of its size is tried.
GZIP_MAX_RATIO = 1032


def _size(n: int) -> str:
    """Bytes for a message: ``123 bytes``, ``4.0 MiB``, ``128.0 TiB``."""
    if n < 1024:
        return f"{n} bytes"
    exp = min(4, int(math.log(n, 1024)))
    return f"{n / 1024 ** exp:,.1f} {('KiB', 'MiB', 'GiB', 'TiB')[exp - 1]}"


def spatial_shape(path: Path, shape: tuple[int, ...]) -> tuple[tuple[int, int, int], int | None]:
    """(x, y, z) and the series length (None for 3D). Trailing singleton dimensions are dropped."""
    dims = list(shape)
    while len(dims) > 3 and dims[-1] == 1:
        dims.pop()
    if len(dims) == 3:
        return tuple(dims), None  # type: ignore[return-value]
    if len(dims) == 4:
        return tuple(dims[:3]), dims[3]  # type: ignore[return-value]
    raise InputError(f"{path}: a {len(dims)}D image of shape {shape}; expected a 3D volume or a 4D series")


def series_plan(path: Path, shape: tuple[int, ...], n_series: int | None, volume: int | None,
                 policy: SeriesPolicy) -> list[tuple[int | None, str]]:
    """Which volumes to yield, each with the note the output record will carry."""
    if policy not in ("error", "select", "each"):
        raise ConfigError(f"series policy must be 'error', 'select' or 'each', got {policy!r}")
    if policy == "each" and volume is not None:
        raise ConfigError(f"--volume {volume} and --series each contradict each other; give one")
    if n_series is None:
        if volume not in (None, 0):
            raise InputError(f"{path}: --volume {volume} asked for but the file is a single 3D volume "
                             f"of shape {shape}")
        squeezed = f"shape {shape}: trailing singleton dimension squeezed to 3D" if len(shape) > 3 else ""
        return [(None, squeezed)]
    what = f"4D series of {n_series} volumes"
    if volume is not None:
        if not 0 <= volume < n_series:
            raise InputError(f"{path}: --volume {volume} is out of range for a {what} (shape {shape}); "
                             f"expected 0..{n_series - 1}")
        return [(volume, f"{what}: volume {volume} selected by --volume {volume}")]
    if policy == "each":
        return [(i, f"{what}: volume {i} of {n_series} (--series each)") for i in range(n_series)]
    if policy == "select":
        raise ConfigError("series policy 'select' needs --volume N")
    raise InputError(f"{path}: a {what}, shape {shape}; expected one volume: pass --volume N "
                     f"(0-based, 0..{n_series - 1}) or --series each")


def warn_geometry(path: Path, header: nib.Nifti1Header, orientation: Orientation) -> None:
    if int(header["qform_code"]) == 0 and int(header["sform_code"]) == 0:
        warnings.warn(f"{path}: qform_code and sform_code are both 0, so the orientation is unknown; "
                      "the output keeps the same header", SegpipeWarning, stacklevel=3)
    affine = header.get_best_affine()
    if np.any(np.linalg.norm(affine[:3, :3], axis=0) == 0):
        warnings.warn(f"{path}: the affine has a zero column {orientation.source_codes}; "
                      "slice-axis choice may not be anatomical", SegpipeWarning, stacklevel=3)


def one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split()) or type(exc).__name__
