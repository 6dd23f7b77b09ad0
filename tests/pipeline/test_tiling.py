import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pipeline.tiling.blend import BLEND_WINDOWS, tile_window
from pipeline.errors import ConfigError
from pipeline.tiling import TileGrid, axis_offsets


@settings(max_examples=200, deadline=None)
@given(
    h=st.integers(1, 700), w=st.integers(1, 700),
    tile_k=st.integers(1, 8), overlap_frac=st.floats(0, 0.9), blend=st.sampled_from(sorted(BLEND_WINDOWS)),
)
def test_windows_cover_every_pixel_with_positive_weight_and_stay_inside(h, w, tile_k, overlap_frac, blend):
    tile = 32 * tile_k
    overlap = int(tile * overlap_frac)
    grid = TileGrid.build(h, w, tile, overlap)
    m = overlap // 2
    win = tile_window(blend, grid.read_h, grid.read_w, (m, m, m, m))  # worst case: margins on every side
    weight = np.zeros((h, w))
    for t in grid:
        r0, c0 = t.window.row_off, t.window.col_off
        assert r0 >= 0 and c0 >= 0
        assert r0 + t.window.height <= h and c0 + t.window.width <= w
        weight[r0 : r0 + t.window.height, c0 : c0 + t.window.width] += win
    assert (weight > 0).all()
    # Network-side tile shapes respect the model stride.
    assert grid.tile_h % 32 == 0 and grid.tile_w % 32 == 0
    assert grid.tile_h >= grid.read_h and grid.tile_w >= grid.read_w


@settings(max_examples=200, deadline=None)
@given(length=st.integers(1, 3000), tile_k=st.integers(1, 16), overlap_frac=st.floats(0, 0.9))
def test_axis_offsets_snap_last_window_and_keep_stride(length, tile_k, overlap_frac):
    tile = 32 * tile_k
    overlap = int(tile * overlap_frac)
    offs = axis_offsets(length, tile, overlap)
    assert offs[0] == 0
    if length <= tile:
        assert offs == (0,)
        return
    assert offs[-1] == length - tile  # snapped to the border, never past it
    steps = np.diff(offs)
    assert (steps > 0).all() and (steps <= tile - overlap).all()


def test_rows_finished_after_partition_the_image():
    grid = TileGrid.build(1000, 300, 256, 64)
    spans = [grid.rows_finished_after(r) for r in range(grid.n_rows)]
    assert spans[0][0] == 0 and spans[-1][1] == 1000
    assert all(a[1] == b[0] for a, b in zip(spans, spans[1:]))
    # A finished span is never touched by a later grid row.
    for r, (_, stop) in enumerate(spans[:-1]):
        assert all(y >= stop for y in grid.row_offsets[r + 1 :])


@pytest.mark.parametrize("tile,overlap", [(100, 10), (0, 0), (64, 64), (64, -1)])
def test_bad_tiling_is_a_config_error(tile, overlap):
    with pytest.raises(ConfigError):
        TileGrid.build(500, 500, tile, overlap)


def test_small_image_gets_one_padded_tile():
    grid = TileGrid.build(40, 70, 256, 32)
    assert grid.n_tiles == 1
    assert (grid.read_h, grid.read_w) == (40, 70)
    assert (grid.tile_h, grid.tile_w) == (64, 96)
