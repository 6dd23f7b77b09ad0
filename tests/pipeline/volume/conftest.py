"""Factories for tiny NIfTI volumes with known geometry (built in tmp_path, never shipped)."""

from __future__ import annotations

import os
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

SHAPE = (20, 24, 16)
ZOOMS = (0.7, 0.8, 2.5)  # anisotropic: axis 2 is the through-plane axis on disk


def rotation(axis: int, degrees: float) -> np.ndarray:
    """3x3 rotation about one world axis."""
    t = np.deg2rad(degrees)
    c, s = np.cos(t), np.sin(t)
    i, j = [a for a in range(3) if a != axis]
    r = np.eye(3)
    r[i, i], r[i, j], r[j, i], r[j, j] = c, -s, s, c
    return r


def affine_from(direction: np.ndarray, zooms=ZOOMS, origin=(-12.5, 30.0, -40.25)) -> np.ndarray:
    """Affine whose voxel axis i points along ``direction[:, i]`` with spacing zooms[i]."""
    aff = np.eye(4)
    aff[:3, :3] = np.asarray(direction, dtype=float) @ np.diag(zooms)
    aff[:3, 3] = origin
    return aff


def _perm(cols: list[tuple[int, int]]) -> np.ndarray:
    """Direction matrix from (world axis, sign) per voxel axis."""
    d = np.zeros((3, 3))
    for vox, (world, sign) in enumerate(cols):
        d[world, vox] = sign
    return d


LPS = _perm([(0, -1), (1, -1), (2, 1)])
PSR = _perm([(1, -1), (2, 1), (0, 1)])
OBLIQUE = rotation(0, 25) @ rotation(2, -35) @ LPS
SHEAR = np.array([[1.0, 0.3, 0.0], [0.0, 1.0, 0.2], [0.0, 0.0, 1.0]])

# name -> (qform affine or None, sform affine or None); qform can't hold a shear, the sform can.
GEOMETRIES = {
    "ras": (affine_from(np.eye(3)), affine_from(np.eye(3))),
    "lps": (affine_from(LPS), affine_from(LPS)),
    "psr": (affine_from(PSR), affine_from(PSR)),
    "oblique": (affine_from(OBLIQUE), affine_from(OBLIQUE)),
    "sheared": (affine_from(LPS), affine_from(SHEAR @ LPS)),
    # scanner qform and a different aligned sform (registered to another space)
    "q1_s2_differ": (affine_from(PSR), affine_from(rotation(1, 10) @ PSR, origin=(5.0, -7.0, 9.0))),
    "qform_only": (affine_from(OBLIQUE), None),
}


def write_nifti(path: Path, data: np.ndarray, *, qform=None, sform=None, qform_code=1, sform_code=2,
                zooms=ZOOMS, slope: float | None = None, inter: float | None = None,
                nifti2: bool = False) -> Path:
    """Write ``data`` as stored values (no rescaling by nibabel) with exactly these geometry fields."""
    klass = nib.Nifti2Image if nifti2 else nib.Nifti1Image
    img = klass(data, None)
    hdr = img.header
    hdr.set_data_dtype(data.dtype)
    hdr.set_zooms(tuple(zooms) + (1.0,) * (data.ndim - 3))
    if qform is not None:
        img.set_qform(qform, code=qform_code)
    if sform is not None:
        img.set_sform(sform, code=sform_code)
    hdr.set_xyzt_units("mm", "sec")
    # After construction (the constructor resets scaling to NaN = "choose on save"):
    # a numeric scaling makes nibabel store the values as given.
    hdr.set_slope_inter(1.0 if slope is None else slope, 0.0 if inter is None else inter)
    nib.save(img, str(path))
    return path


@pytest.fixture
def make_nifti(tmp_path):
    """make_nifti(name, data, geometry="lps", **write_nifti kw) -> path in tmp_path."""

    def make(name: str, data: np.ndarray, geometry: str = "lps", **kw) -> Path:
        qform, sform = GEOMETRIES[geometry]
        kw.setdefault("qform", qform)
        kw.setdefault("sform", sform)
        return write_nifti(tmp_path / name, data, **kw)

    return make


@pytest.fixture
def int16_volume():
    """A deterministic int16 volume of SHAPE with structure along every axis."""
    rng = np.random.default_rng(7)
    return rng.integers(-200, 800, size=SHAPE, dtype=np.int16)


@pytest.fixture(scope="session")
def nibabel_data() -> Path:
    """nibabel's bundled test volumes (shipped in the wheel under nibabel/tests/data)."""
    return Path(os.path.dirname(nib.__file__)) / "tests" / "data"
