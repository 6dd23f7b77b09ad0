"""The COG sink's temporary file: a fast codec, while the output keeps the one asked for."""

from __future__ import annotations

import numpy as np
import rasterio
from affine import Affine
from rasterio.crs import CRS

import pipeline.sinks.geotiff.cog as write
from pipeline.sinks.geotiff.cog import GeoTiffSink, Grid, OutputSpec, cog_problems, gtiff_supports


def test_codec_probe():
    assert gtiff_supports("zstd") and gtiff_supports("deflate")  # rasterio's wheels have both
    assert not gtiff_supports("no-such-codec")  # GDAL would only warn and store it raw


def test_temp_is_zstd_and_the_output_deflate(tmp_path, monkeypatch):
    seen = {}
    real_copy = write.gdal_copy

    def spy(src, dst, **opts):
        with rasterio.open(src) as ds:
            seen["temp"] = ds.compression.value
        return real_copy(src, dst, **opts)

    monkeypatch.setattr(write, "gdal_copy", spy)
    labels = (np.arange(700)[:, None] // 50 + np.arange(900)[None, :] // 70).astype(np.uint8) % 4
    grid = Grid(900, 700, CRS.from_epsg(32633), Affine(10, 0, 500000, 0, -10, 6000000))
    sink = GeoTiffSink(OutputSpec(tmp_path / "m.tif", 1, "uint8", 255), grid, compress="deflate")
    for y in range(0, 700, 200):
        sink.write(y, labels[y:y + 200])
    path = sink.finish()
    assert seen["temp"] == "ZSTD"
    assert cog_problems(path) == [] and [p.name for p in tmp_path.iterdir()] == ["m.tif"]
    with rasterio.open(path) as ds:
        assert ds.compression.value == "DEFLATE"
        np.testing.assert_array_equal(ds.read(1), labels)
