"""Synthetic CT-like NIfTI volumes with ground truth, defined in anatomical (RAS+) terms.

The anatomy is laid out on disk in the requested orientation only at the end, so the same
anatomy appears whatever the voxel order.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import nibabel as nib
import numpy as np
from nibabel.orientations import apply_orientation, axcodes2ornt, inv_ornt_aff, ornt_transform

from pipeline.errors import ConfigError

log = logging.getLogger(__name__)

# Volume labels, value = index. Organs live in RAS+ world space (x -> patient Right,
# y -> Anterior, z -> Superior), as NIfTI's qform/sform define it.
LABEL_NAMES: tuple[str, ...] = ("background", "liver", "kidney", "bone")
LABEL_HU: tuple[float, ...] = (40.0, 60.0, 150.0, 700.0)  # background = soft tissue
AIR_HU, FAT_HU = -1000.0, -90.0
VOLUME_DTYPES: tuple[str, ...] = ("int16", "int32", "uint16", "float32", "float64")


@dataclass(frozen=True, eq=False)  # eq=False: the affine is an array (no elementwise ==)
class VolumeInfo:
    """What :func:`write_volume` wrote. ``shape`` and ``spacing`` are on-disk (header) order."""

    path: Path
    label_path: Path | None
    shape: tuple[int, ...]
    affine: np.ndarray
    spacing: tuple[float, float, float]
    label_names: tuple[str, ...] = LABEL_NAMES



# ---------------------------------------------------------------- volumes


def _ras_grid(shape: Sequence[int]) -> tuple[np.ndarray, ...]:
    """Normalised coordinates in [-1, 1] along R, A, S of a RAS-ordered voxel grid."""
    axes = [np.linspace(-1.0, 1.0, n) if n > 1 else np.zeros(1) for n in shape]
    return tuple(np.meshgrid(*axes, indexing="ij", sparse=True))


def _world_grid(shape: Sequence[int], affine: np.ndarray) -> tuple[np.ndarray, ...]:
    """Normalised RAS coordinates of every voxel of an arbitrary (e.g. oblique) grid."""
    ijk = np.indices(tuple(shape), dtype=np.float64).reshape(3, -1)
    xyz = affine[:3, :3] @ ijk + affine[:3, 3:4]
    corners = np.array(np.meshgrid(*[[0, n - 1] for n in shape], indexing="ij")).reshape(3, -1)
    cxyz = affine[:3, :3] @ corners + affine[:3, 3:4]
    centre, half = cxyz.mean(axis=1), np.maximum(np.ptp(cxyz, axis=1) / 2, 1e-6)
    return tuple(((xyz[a] - centre[a]) / half[a]).reshape(shape) for a in range(3))


def _anatomy(u: np.ndarray, v: np.ndarray, w: np.ndarray, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """HU (no noise) and labels from normalised RAS coordinates: trunk, liver, kidneys, spine."""
    ph = np.random.default_rng([seed, 0xB0D]).uniform(0, 2 * np.pi, 4)
    wobble = 0.07 * np.sin(3.1 * u + ph[0]) * np.sin(2.7 * v + ph[1]) + 0.05 * np.sin(2.3 * w + ph[2])
    shape = np.broadcast_shapes(u.shape, v.shape, w.shape)
    body = np.broadcast_to((u / 0.85) ** 2 + (v / 0.65) ** 2, shape)  # a trunk: elliptic cylinder along S-I
    hu = np.where(body <= 1.0, np.where(body > 0.8, FAT_HU, LABEL_HU[0]), AIR_HU)
    labels = np.zeros(hu.shape, np.uint8)
    liver = ((u - 0.35) / 0.33) ** 2 + ((v - 0.1) / 0.33) ** 2 + ((w - 0.25) / 0.45) ** 2 + wobble < 1.0
    labels[liver] = 1
    for side in (-1.0, 1.0):
        kidney = ((u - side * 0.36) / 0.11) ** 2 + ((v + 0.3) / 0.14) ** 2 + ((w + 0.15) / 0.28) ** 2 < 1.0
        labels[kidney] = 2
    vertebra = (np.mod(w * 5 + ph[3], 1.0) < 0.78) & (u**2 + (v + 0.45) ** 2 < 0.11**2)
    disc = (u**2 + (v + 0.45) ** 2 < 0.11**2) & ~vertebra
    labels[vertebra] = 3
    hu = np.where(labels > 0, np.take(LABEL_HU, labels), np.where(disc, 80.0, hu))
    return hu.astype(np.float32), labels


def _orientation_affine(shape_ras: Sequence[int], spacing_ras: Sequence[float], orientation: str):
    """On-disk transform for an anatomical (RAS-ordered) grid centred on the world origin."""
    codes = tuple(orientation.upper())
    try:
        target = axcodes2ornt(codes)
    except Exception as exc:  # nibabel raises ValueError/KeyError variants
        raise ConfigError(f"write_volume: orientation {orientation!r} is not an axis code; "
                          "use three letters like 'RAS', 'LPS' or 'PSR'.") from exc
    if len(codes) != 3 or np.isnan(target).any() or sorted(target[:, 0]) != [0, 1, 2]:
        raise ConfigError(f"write_volume: orientation {orientation!r} must name R/L, A/P and S/I once each, "
                          "e.g. 'LPS'.")
    ras_affine = np.diag([*map(float, spacing_ras), 1.0])
    ras_affine[:3, 3] = -(np.asarray(shape_ras) - 1) / 2 * np.asarray(spacing_ras)
    to_disk = ornt_transform(axcodes2ornt(("R", "A", "S")), target)
    return to_disk, ras_affine @ inv_ornt_aff(to_disk, tuple(shape_ras))


def write_volume(path: str | os.PathLike, shape: Sequence[int] = (128, 128, 64), *,
                 spacing: Sequence[float] = (0.8, 0.8, 2.5), orientation: str = "RAS",
                 affine: np.ndarray | None = None, dtype: str = "int16", slope: float = 1.0, inter: float = 0.0,
                 seed: int = 0, label_path: str | os.PathLike | None = None, qform_code: int = 1,
                 sform_code: int = 1, extra_dims: tuple[int, ...] = ()) -> VolumeInfo:
    """Write a CT-like NIfTI volume (and optionally its label map with the same header geometry).

    Without ``affine``, ``shape`` and ``spacing`` are *anatomical*: along R-L, A-P, S-I. The
    on-disk array is that grid permuted/flipped to ``orientation`` (axis codes, nibabel
    convention: 'LPS' = first axis increases to the Left), so every orientation holds the
    same voxels at the same world positions. With ``affine`` (e.g. oblique), ``shape`` is
    the on-disk shape and the anatomy is evaluated at each voxel's world position.

    Args:
        dtype: on-disk type; integers store ``raw = round((HU - inter) / slope)`` with
            scl_slope/scl_inter set, so readers get HU back.
        extra_dims: ``(1,)`` or ``(n,)`` appends a 4th axis (n contrast phases); labels stay 3-D.
    """
    if dtype not in VOLUME_DTYPES or slope == 0 or len(shape) != 3 or min(shape) < 1:
        raise ConfigError(f"write_volume: got shape={tuple(shape)}, dtype={dtype!r}, slope={slope}; "
                          f"expected 3 positive sizes, dtype in {VOLUME_DTYPES} and a non-zero slope.")
    n_phases = _check_extra_dims(extra_dims)
    noise = np.random.default_rng([seed, 0xC7]).standard_normal((n_phases, *shape), dtype=np.float32)
    if affine is None:
        # Anatomy on the RAS grid, then permuted/flipped to disk: exact same voxels in any orientation.
        to_disk, affine = _orientation_affine(shape, spacing, orientation)
        hu, labels = _anatomy(*_ras_grid(shape), seed)
        layout = lambda a: apply_orientation(a, to_disk)  # noqa: E731
    else:
        affine = np.asarray(affine, dtype=np.float64)
        hu, labels = _anatomy(*_world_grid(shape, affine), seed)
        layout = lambda a: a  # noqa: E731
    hu_t = _phases(hu, labels, noise)
    data = np.stack([layout(h) for h in hu_t], axis=-1) if extra_dims else layout(hu_t[0])
    img = _nifti(data, affine, dtype, slope, inter, qform_code, sform_code)
    path = Path(path)
    nib.save(img, path)
    if label_path is not None:
        nib.save(_label_image(img, layout(labels)), Path(label_path))
    log.info("wrote synthetic volume %s %s %s", path, data.shape, "".join(nib.aff2axcodes(affine)))
    return VolumeInfo(path, None if label_path is None else Path(label_path), tuple(int(n) for n in data.shape),
                      img.affine.copy(), tuple(round(float(z), 6) for z in img.header.get_zooms()[:3]))


def _check_extra_dims(extra_dims: tuple[int, ...]) -> int:
    """Number of phases: 1 for a 3-D volume or ``(1,)``, n for ``(n,)``."""
    if len(extra_dims) > 1 or (extra_dims and extra_dims[0] < 1):
        raise ConfigError(f"write_volume: extra_dims={extra_dims}; expected () or (n,) with n >= 1, e.g. (1,) or (3,).")
    return extra_dims[0] if extra_dims else 1


def _phases(hu: np.ndarray, labels: np.ndarray, noise: np.ndarray) -> list[np.ndarray]:
    """One HU volume per contrast phase (organs enhance in later ones), 10 HU noise inside the body."""
    enhance = np.array([0.0, 15.0, 60.0, 0.0], np.float32)[labels]
    body = hu > AIR_HU
    return [np.where(body, hu + t * enhance + 10.0 * noise[t], AIR_HU).astype(np.float32) for t in range(len(noise))]


def _nifti(hu: np.ndarray, affine: np.ndarray, dtype: str, slope: float, inter: float, qform_code: int,
           sform_code: int) -> nib.Nifti1Image:
    raw = (hu - inter) / slope
    if np.dtype(dtype).kind in "iu":
        info = np.iinfo(dtype)
        raw = np.clip(np.rint(raw), info.min, info.max)
    img = nib.Nifti1Image(raw.astype(dtype), affine)
    img.header.set_xyzt_units("mm", "sec")
    img.set_qform(affine, code=int(qform_code))
    img.set_sform(affine, code=int(sform_code))
    # Set after construction: nibabel then writes the raw values unscaled with these factors.
    img.header.set_slope_inter(slope, inter)
    return img


def _label_image(img: nib.Nifti1Image, labels: np.ndarray) -> nib.Nifti1Image:
    """Labels on the image's exact header geometry (codes included), uint8, no scaling."""
    hdr = img.header.copy()
    hdr.set_data_dtype(np.uint8)
    hdr.set_slope_inter(1, 0)
    lab = nib.Nifti1Image(labels.astype(np.uint8), img.affine, hdr)
    lab.set_qform(img.header.get_qform(), code=int(img.header["qform_code"]))
    lab.set_sform(img.header.get_sform(), code=int(img.header["sform_code"]))
    lab.header.set_slope_inter(1, 0)
    return lab


