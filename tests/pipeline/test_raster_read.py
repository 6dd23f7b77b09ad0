"""The per-scene statistics sample: spread over the whole scene, valid pixels only, cheap."""

from __future__ import annotations

import numpy as np
import rasterio
from hypothesis import given, settings
from hypothesis import strategies as st

from pipeline.readers.geotiff import StripReader, open_raster, sample_windows


@settings(max_examples=200, deadline=None)
@given(st.integers(1, 5000), st.integers(1, 5000), st.sampled_from([(64, 64), (512, 512), (1, 5000), (16, 256)]),
       st.integers(1, 100), st.integers(8, 600))
def test_sample_windows_stay_inside_never_overlap_and_spread_out(height, width, block, n, side):
    wins = sample_windows(height, width, block, n=n, side=side)
    assert 1 <= len(wins) <= max(1, int(np.sqrt(n))) ** 2
    assert len({(w.height, w.width) for w in wins}) == 1  # equal windows: a rectangular mosaic
    cover = np.zeros((height, width), np.uint8) if height * width <= 4_000_000 else None
    for w in wins:
        assert 0 <= w.row_off and w.row_off + w.height <= height
        assert 0 <= w.col_off and w.col_off + w.width <= width
        if cover is not None:
            cover[w.row_off:w.row_off + w.height, w.col_off:w.col_off + w.width] += 1
    if cover is not None:
        assert cover.max() == 1  # no pixel sampled twice
    rows = sorted({w.row_off for w in wins})
    if height >= 4 * min(side, height) and n >= 16:  # room for several rows of windows: they reach the far end
        assert rows[-1] + wins[0].height > height * 0.6


def test_a_scene_without_overviews_is_sampled_in_full_resolution_windows(make_tif, tmp_path):
    rng = np.random.default_rng(0)
    h, w = 900, 1100
    data = (rng.gamma(2.0, 300.0, (2, h, w)) + np.linspace(0, 2000, w)).astype(np.uint16)  # a trend across
    data[:, :, :100] = 0  # nodata border
    path = make_tif(data, nodata=0)
    info = open_raster(path)
    with StripReader(info, 2) as r:
        sample, valid = r.sample(max_side=64)  # 1100 > 4 x 64: windows, not a decimated read
    assert sample.shape[0] == 2 and sample.shape[1] <= 512
    assert sample.shape[2] > sample.shape[1]  # several windows side by side
    assert not (sample[:, valid] == 0).any() and (~valid).any()  # the border is sampled and marked invalid
    whole = data[0][data[0] > 0]
    got = sample[0][valid]
    for q in (2, 50, 98):  # percentiles of a spread-out sample are close to the whole scene's
        a, b = np.percentile(got, q), np.percentile(whole, q)
        assert abs(a - b) < 0.08 * (np.percentile(whole, 98) - np.percentile(whole, 2)), q


def test_overviews_or_a_small_scene_keep_the_decimated_read(make_tif):
    rng = np.random.default_rng(1)
    data = rng.integers(1, 1000, (1, 600, 700)).astype(np.uint16)
    path = make_tif(data)
    with StripReader(open_raster(path), 2) as r:
        small, _ = r.sample(max_side=256)  # 700 <= 4 x 256
    assert small.shape == (1, 219, 256)  # decimated by 700 / 256
    with rasterio.open(path, "r+") as ds:
        ds.build_overviews([2, 4], rasterio.enums.Resampling.nearest)
    with StripReader(open_raster(path), 2) as r:
        decimated, _ = r.sample(max_side=64)
    assert decimated.shape == (1, 54, 64)
