"""Outputs GIS tools label: class names and a RAT that GDAL reports, a QGIS style, grey score bands, --co."""

from __future__ import annotations

import xml.etree.ElementTree as ET

import numpy as np
import pytest
import rasterio
from rasterio.enums import ColorInterp

from pipeline.errors import ConfigError
from pipeline.options import RunOptions
from pipeline.run.geotiff import segment_scene
from pipeline.sinks.geotiff import cog_problems

from .conftest import identity_handle
from .gdal_report import band_report

CPU = dict(device="cpu", workers=2)
NAMES = ("background", "water", "forest", "built")


def _scene(make_tif, k: int = 4, h: int = 300, w: int = 340):
    rng = np.random.default_rng(0)
    return make_tif(rng.random((k, h, w)).astype(np.float32))


def _model(k: int = 4):
    m = identity_handle(k)
    object.__setattr__(m.spec, "class_names", NAMES[:k])
    return m


def test_the_mask_carries_class_names_a_rat_and_a_colour_table_of_the_classes(make_tif, tmp_path):
    model = _model()
    res = segment_scene(_scene(make_tif), model, tmp_path / "out", RunOptions(**CPU))
    mask = res.outputs["mask"]
    colors = [list(c) for c in model.spec.colors()]
    got = band_report(mask)
    assert got["categories"] == list(NAMES)  # what QGIS/ArcGIS legends read
    assert got["colors"] == 4  # not the TIFF colour map's 256 entries
    assert got["rat"]["columns"] == [("Value", 5), ("Class", 2), ("R", 6), ("G", 7), ("B", 8)]  # MinMax, Name, RGB
    assert got["rat"]["rows"] == [[str(i), n, *map(str, c)] for i, (n, c) in enumerate(zip(NAMES, colors))]
    assert cog_problems(mask) == []
    assert sorted(p.name for p in res.scene_dir.glob("scene_mask*")) == [
        "scene_mask.qml", "scene_mask.tif", "scene_mask.tif.aux.xml"]
    style = ET.parse(res.scene_dir / "scene_mask.qml").getroot()
    renderer = style.find("pipe/rasterrenderer")
    assert renderer.get("type") == "paletted" and renderer.get("band") == "1"
    entries = [(e.get("value"), e.get("label"), e.get("color")) for e in renderer.iter("paletteEntry")]
    assert entries == [(str(i), n, "#%02x%02x%02x" % tuple(c)) for i, (n, c) in enumerate(zip(NAMES, colors))]


def test_probabilities_and_confidence_are_grey_bands_with_descriptions(make_tif, tmp_path):
    res = segment_scene(_scene(make_tif), _model(), tmp_path / "out",
                        RunOptions(probabilities=True, confidence=True, **CPU))
    with rasterio.open(res.outputs["probabilities"]) as ds:
        assert ds.count == 4 and ColorInterp.alpha not in ds.colorinterp and ColorInterp.red not in ds.colorinterp
        assert ds.colorinterp[0] == ColorInterp.gray
        assert ds.descriptions == tuple(f"p({n}) x 254" for n in NAMES)
    with rasterio.open(res.outputs["confidence"]) as ds:
        assert ds.colorinterp == (ColorInterp.gray,) and ds.descriptions == ("max class probability x 254",)
    for out in res.outputs.values():
        assert cog_problems(out) == []


def test_creation_options_reach_every_cog_and_it_stays_valid(make_tif, tmp_path):
    opts = RunOptions(co=["BLOCKSIZE=256", "COMPRESS=ZSTD", "LEVEL=15"], confidence=True, **CPU)
    res = segment_scene(_scene(make_tif, h=700, w=900), _model(), tmp_path / "out", opts)
    for out in res.outputs.values():
        with rasterio.open(out) as ds:
            assert ds.block_shapes[0] == (256, 256) and ds.compression.value == "ZSTD" and ds.overviews(1)
        assert cog_problems(out, 256) == []
    assert res.record["settings"]["co"] == {"BLOCKSIZE": "256", "COMPRESS": "ZSTD", "LEVEL": "15"}
    assert band_report(res.outputs["mask"])["categories"] == list(NAMES)


@pytest.mark.parametrize("co, message", [
    (["COMPRES=ZSTD"], "COMPRES is not a creation option of GDAL's COG driver"),
    (["COMPRESS=JPEG"], "COMPRESS=JPEG is lossy"),
    (["BLOCKSIZE=100"], "BLOCKSIZE=100: expected a multiple of 16"),
    (["TILING_SCHEME=GoogleMapsCompatible"], "input's own pixel grid"),
    (["PREDICTOR=MAYBE"], "expected one of YES, NO"),
    (["LEVEL"], "expected KEY=VALUE"),
])
def test_a_bad_creation_option_is_one_clear_error(co, message):
    with pytest.raises(ConfigError, match=message) as err:
        RunOptions(co=co)
    assert "\n" not in str(err.value) and "co:" in str(err.value)
