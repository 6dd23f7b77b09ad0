"""A volume's three centre planes as radiologists see them (compute only).

Input planes are cut from canonical arrays (RAS+: axis 0 runs to the patient's Right,
1 to Anterior, 2 to Superior), each indexed by its two remaining axes in ascending order.
They are shown as 3D Slicer, ITK-SNAP and PACS viewers show them (Slicer's slice-view
presets): axial and coronal with the patient's right on the image's *left*, sagittal with
anterior on the left, superior / anterior up. Each picture is resampled to square
millimetres (nearest neighbour), so a 0.7 x 0.7 x 2.5 mm CT is not squashed 3.6x in its
coronal and sagittal planes, and carries the L/R/A/P/S/I letters of its four edges.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

# plane name -> (canonical axis held fixed, edge letters (left, right, top, bottom))
VIEWS: dict[str, tuple[int, tuple[str, str, str, str]]] = {
    "axial": (2, ("R", "L", "A", "P")),
    "coronal": (1, ("R", "L", "S", "I")),
    "sagittal": (0, ("A", "P", "S", "I")),
}
# Longer side of a plane picture, in pixels: a small volume is enlarged (nearest neighbour) to
# MIN_SIDE so that its letters do not cover it; a large one reduced to MAX_SIDE.
MIN_SIDE, MAX_SIDE = 320, 384


@dataclass(frozen=True)
class Plane:
    """One display-ready plane: rows top -> bottom, columns left -> right on screen."""

    name: str
    image: np.ndarray                  # grey values (any dtype)
    labels: np.ndarray                 # class ids
    confidence: np.ndarray | None      # uint8 p x 254, 255 = no prediction
    markers: tuple[str, str, str, str]  # letters at the left, right, top and bottom edges
    mm_per_pixel: float                # of the resampled picture, both directions
    zooms: tuple[float, float, float]  # the volume's canonical voxel spacing (to orient more planes alike)


def cut_centre(volume: np.ndarray) -> dict[int, np.ndarray]:
    """Fixed canonical axis -> the 2D plane through the volume's centre (views, not copies)."""
    i, j, k = (n // 2 for n in volume.shape[:3])
    return {0: volume[i, :, :], 1: volume[:, j, :], 2: volume[:, :, k]}


def centre_planes(image: np.ndarray, labels: np.ndarray, zooms: Sequence[float],
                  confidence: Mapping[int, np.ndarray] | None = None) -> dict[str, Plane]:
    """The axial, coronal and sagittal centre planes of canonical ``image``/``labels`` volumes.

    Args:
        zooms: voxel spacing (mm) per canonical axis.
        confidence: fixed axis -> canonical confidence plane (see :func:`cut_centre`), when known.
    """
    images, labs = cut_centre(image), cut_centre(labels)
    z = tuple(float(v) for v in zooms[:3])
    out = {}
    for name, (axis, markers) in VIEWS.items():
        shown, mm = orient(name, images[axis], z)
        conf = None if confidence is None or axis not in confidence else orient(name, confidence[axis], z)[0]
        out[name] = Plane(name, shown, orient(name, labs[axis], z)[0], conf, markers, mm, z)  # type: ignore[arg-type]
    return out


def orient(name: str, plane: np.ndarray, zooms: Sequence[float]) -> tuple[np.ndarray, float]:
    """A canonical plane (its two axes ascending) as the screen shows it, pixels squared; and mm per pixel."""
    axis = VIEWS[name][0]
    u, v = (a for a in range(3) if a != axis)
    # canonical (u, v) -> screen: rows = v from high to low (S / A up), columns = u from high to low
    # (patient right, or anterior for the sagittal plane, on the left)
    rows, cols, mm = square_pixel_index(plane.shape[1], plane.shape[0], float(zooms[v]), float(zooms[u]))
    return np.ascontiguousarray(plane.T[::-1, ::-1][np.ix_(rows, cols)]), mm


def square_pixel_index(n_rows: int, n_cols: int, row_mm: float, col_mm: float, min_side: int = MIN_SIDE,
                       max_side: int = MAX_SIDE) -> tuple[np.ndarray, np.ndarray, float]:
    """Source row and column of each output pixel so that pixels are square in millimetres.

    The output is sized to the plane's physical extent at the finer of the two spacings,
    with its longer side brought into [``min_side``, ``max_side``]; each output pixel takes
    the nearest source voxel. Returns (row index, column index, mm per output pixel).
    """
    height, width = n_rows * row_mm, n_cols * col_mm
    mm = min(row_mm, col_mm)
    longest = max(height, width)
    if not min_side <= longest / mm <= max_side:
        mm = longest / (max_side if longest / mm > max_side else min_side)
    out_rows, out_cols = max(1, round(height / mm)), max(1, round(width / mm))
    r = np.minimum(((np.arange(out_rows) + 0.5) * n_rows / out_rows).astype(np.int64), n_rows - 1)
    c = np.minimum(((np.arange(out_cols) + 0.5) * n_cols / out_cols).astype(np.int64), n_cols - 1)
    return r, c, mm


def slicing_to_canonical(slice_axis: int, centre_slice: np.ndarray, centre_rows: np.ndarray,
                         centre_cols: np.ndarray) -> dict[int, np.ndarray]:
    """Planes gathered while slices streamed, by fixed canonical axis, each indexed (low axis, high axis).

    A slice along ``slice_axis`` A has rows over the lower remaining axis B and columns over
    the higher one C (``pipeline.readers.nifti.slicing``). ``centre_slice`` (B, C) is the slice at
    A's centre; ``centre_rows`` (A, C) stacks every slice's centre row (B held fixed);
    ``centre_cols`` (A, B) every slice's centre column (C held fixed).
    """
    b, c = (a for a in range(3) if a != slice_axis)
    return {
        slice_axis: centre_slice,
        b: centre_rows if slice_axis < c else centre_rows.T,
        c: centre_cols if slice_axis < b else centre_cols.T,
    }
