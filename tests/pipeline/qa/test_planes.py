"""A volume's centre planes as radiology viewers show them: orientation, letters, square millimetres."""

from __future__ import annotations

import numpy as np
import pytest

from pipeline.qa.planes import VIEWS, centre_planes, cut_centre, square_pixel_index
from pipeline.qa.thumbgrid import VolumePlanes


def _marked(shape=(30, 40, 20)) -> np.ndarray:
    """A canonical (RAS+) volume, 0 but for three blocks through the centre planes: at the patient's
    right (high x), anterior (high y) and superior (high z) ends."""
    v = np.zeros(shape, dtype=np.uint8)
    cx, cy, cz = (n // 2 for n in shape)
    v[-3:, cy, cz] = 1   # right
    v[cx, -3:, cz] = 2   # anterior
    v[cx, cy, -3:] = 3   # superior
    return v


def _where(plane: np.ndarray, value: int) -> tuple[float, float]:
    """Centre of the pixels of ``value``, as (row, col) fractions of the picture."""
    r, c = np.nonzero(plane == value)
    return r.mean() / plane.shape[0], c.mean() / plane.shape[1]


def test_planes_are_radiological_with_their_edge_letters():
    v = _marked()
    p = centre_planes(v.astype(np.float32), v, (1.0, 1.0, 1.0))
    row, col = _where(p["axial"].labels, 1)     # patient right: on the image's left
    assert col < 0.2 and 0.3 < row < 0.7
    row, col = _where(p["axial"].labels, 2)     # anterior: up
    assert row < 0.2 and 0.3 < col < 0.7
    assert _where(p["coronal"].labels, 1)[1] < 0.2 and _where(p["coronal"].labels, 3)[0] < 0.2  # right left, S up
    row, col = _where(p["sagittal"].labels, 2)  # anterior on the left of the sagittal plane (as 3D Slicer)
    assert col < 0.2
    assert _where(p["sagittal"].labels, 3)[0] < 0.2
    assert {n: pl.markers for n, pl in p.items()} == {
        "axial": ("R", "L", "A", "P"), "coronal": ("R", "L", "S", "I"), "sagittal": ("A", "P", "S", "I")}
    assert all(np.array_equal(pl.image, pl.labels) for pl in p.values())  # the image went the same way


@pytest.mark.parametrize("zooms", [(0.7, 0.7, 2.5), (1.0, 2.0, 1.0), (3.0, 1.0, 1.0)])
def test_pixels_are_square_in_millimetres(zooms):
    shape = (60, 50, 24)
    p = centre_planes(np.zeros(shape, np.float32), np.zeros(shape, np.uint8), zooms)
    for name, plane in p.items():
        axis = VIEWS[name][0]
        u, v = (a for a in range(3) if a != axis)  # columns over u, rows over v
        h_mm, w_mm = shape[v] * zooms[v], shape[u] * zooms[u]
        rows, cols = plane.labels.shape
        assert rows / cols == pytest.approx(h_mm / w_mm, rel=0.03), (name, plane.labels.shape)
        assert plane.mm_per_pixel == pytest.approx(max(h_mm, w_mm) / max(rows, cols), rel=0.01)
        assert 320 <= max(rows, cols) <= 384


def test_a_big_plane_is_reduced_and_a_small_one_enlarged():
    r, c, mm = square_pixel_index(2000, 1000, 0.5, 0.5)
    assert (len(r), len(c)) == (384, 192) and mm == pytest.approx(1000 / 384)
    r, c, mm = square_pixel_index(10, 20, 1.0, 1.0)
    assert (len(r), len(c)) == (160, 320) and r.max() == 9 and c.max() == 19


@pytest.mark.parametrize("slice_axis", [0, 1, 2])
def test_confidence_planes_kept_from_streamed_slices_equal_the_volume_cut(slice_axis):
    rng = np.random.default_rng(slice_axis)
    conf = rng.integers(0, 255, (9, 12, 7)).astype(np.uint8)
    h, w = (n for i, n in enumerate(conf.shape) if i != slice_axis)
    keep = VolumePlanes(conf.shape[slice_axis], h, w, slice_axis)
    for k in range(conf.shape[slice_axis]):
        plane = np.take(conf, k, axis=slice_axis)
        keep.add(k, plane, np.ones_like(plane, bool))
    got, want = keep.canonical(), cut_centre(conf)
    for axis in range(3):
        np.testing.assert_array_equal(got[axis], want[axis])
