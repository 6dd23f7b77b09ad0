"""Canonical voxel order for volumes: axis permutations and flips only, never resampling.

A scanner writes voxels in whatever order it likes (LPS, PSR, oblique...). segpipe
slices, normalises and counts in one order, reached from the file's own order by
transposing and flipping the voxel array, and goes back the same way on write. The
affine itself is never touched: the output file keeps the input's affine, qform and
sform byte for byte, so an oblique or sheared acquisition round-trips exactly
(``nib.as_closest_canonical`` would rewrite the affine and reset the codes; FIELD_NOTES
"Geometry (NIfTI)").
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from nibabel import orientations as nio

# segpipe works in RAS+ voxel order: the array index increases towards the patient's
# Right along axis 0, Anterior along axis 1 and Superior along axis 2 (nibabel's "RAS"
# axis codes; ITK/DICOM call the same order "LPI"). For an oblique affine this is the
# *closest* such order: each voxel axis goes to the world axis it is most aligned with.
CANONICAL: tuple[str, str, str] = ("R", "A", "S")

# nibabel orientation array of CANONICAL itself: output axis i, not flipped.
_CANONICAL_ORNT = nio.axcodes2ornt(CANONICAL)


@dataclass(frozen=True)
class Orientation:
    """How a volume's on-disk voxel order maps to canonical (RAS+) order and back.

    Attributes:
        ornt: nibabel orientation, one ``(canonical_axis, flip)`` row per source axis:
            source axis i becomes canonical axis ``ornt[i][0]``, reversed when
            ``ornt[i][1] == -1``.
        source_shape: the 3D shape as stored on disk.
        source_codes: the source axes' closest anatomical directions, e.g. ("L", "P", "S").
    """

    ornt: tuple[tuple[int, int], ...]
    source_shape: tuple[int, int, int]
    source_codes: tuple[str, str, str]

    @property
    def inverse(self) -> tuple[tuple[int, int], ...]:
        """The orientation that takes a canonical array back to the source order."""
        inv = nio.ornt_transform(_CANONICAL_ORNT, np.asarray(self.ornt, dtype=float))
        return tuple((int(a), int(f)) for a, f in inv)

    @property
    def is_identity(self) -> bool:
        return self.ornt == ((0, 1), (1, 1), (2, 1))

    @property
    def canonical_shape(self) -> tuple[int, int, int]:
        shape = [0, 0, 0]
        for src, (dst, _) in enumerate(self.ornt):
            shape[dst] = self.source_shape[src]
        return tuple(shape)  # type: ignore[return-value]

    def to_canonical(self, arr: np.ndarray) -> np.ndarray:
        """Source-ordered array (first 3 axes spatial; trailing axes kept) -> canonical view."""
        _check_shape(arr, self.source_shape, "source")
        return nio.apply_orientation(arr, np.asarray(self.ornt, dtype=float))

    def to_source(self, arr: np.ndarray) -> np.ndarray:
        """Canonical array -> the on-disk voxel order (a view; trailing axes kept)."""
        _check_shape(arr, self.canonical_shape, "canonical")
        return nio.apply_orientation(arr, np.asarray(self.inverse, dtype=float))

    def canonical_zooms(self, zooms: tuple[float, ...]) -> tuple[float, float, float]:
        """Voxel spacing per canonical axis from the source's first three zooms."""
        out = [0.0, 0.0, 0.0]
        for src, (dst, _) in enumerate(self.ornt):
            out[dst] = float(zooms[src])
        return tuple(out)  # type: ignore[return-value]

    def canonical_affine(self, affine: np.ndarray) -> np.ndarray:
        """Voxel-to-world affine of the canonical array (for display/QA, never written)."""
        return np.asarray(affine) @ nio.inv_ornt_aff(np.asarray(self.ornt, dtype=float), self.source_shape)


def orientation_of(affine: np.ndarray, shape: tuple[int, ...]) -> Orientation:
    """The closest permutation/flip from the voxel axes of ``affine`` to RAS+.

    A degenerate affine (a zero column, so no direction for that voxel axis) leaves the
    undetermined axes in their source position, unflipped: the volume still round-trips,
    only the slice-axis choice loses its anatomical meaning. The reader warns about it.
    """
    ornt = _complete(nio.io_orientation(np.asarray(affine, dtype=float)))
    rows = tuple((int(a), int(f)) for a, f in ornt)
    codes = tuple(nio.ornt2axcodes(ornt))
    return Orientation(rows, tuple(int(s) for s in shape[:3]), codes)  # type: ignore[arg-type]


def _complete(ornt: np.ndarray) -> np.ndarray:
    """Fill NaN rows of a nibabel orientation with the unused output axes, unflipped."""
    ornt = np.array(ornt, dtype=float)
    used = {int(a) for a in ornt[:, 0] if np.isfinite(a)}
    free = [a for a in range(3) if a not in used]
    for i in range(3):
        if not np.isfinite(ornt[i, 0]):
            ornt[i] = (free.pop(0), 1)
    return ornt


def _check_shape(arr: np.ndarray, expected: tuple[int, int, int], what: str) -> None:
    if arr.ndim < 3 or tuple(arr.shape[:3]) != tuple(expected):
        raise ValueError(f"expected an array with {what} spatial shape {expected}, got {arr.shape}")
