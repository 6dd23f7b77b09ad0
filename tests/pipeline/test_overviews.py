"""Mode overviews built while a class map streams: exact 2 x 2 modes, level by level, in the COG."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest
import rasterio
from affine import Affine
from hypothesis import given, settings
from hypothesis import strategies as st
from rasterio.crs import CRS

from pipeline.sinks.geotiff.overviews import ModePyramid, level_shapes, mode2x2
from pipeline.sinks.geotiff.cog import BLOCK, GeoTiffSink, Grid, OutputSpec, cog_problems

ND = 255


def _brute_mode(window: list[int], nd: int = ND) -> int:
    """Most frequent valid value; ties to the first in reading order; all nodata -> nodata."""
    valid = [v for v in window if v != nd]
    if not valid:
        return nd
    counts = Counter(valid)
    top = max(counts.values())
    return next(v for v in valid if counts[v] == top)


def _brute_level(a: np.ndarray, nd: int = ND) -> np.ndarray:
    h, w = (a.shape[0] + 1) // 2, (a.shape[1] + 1) // 2
    out = np.empty((h, w), a.dtype)
    for y in range(h):
        for x in range(w):
            out[y, x] = _brute_mode([int(a[yy, xx]) for yy in (2 * y, 2 * y + 1) for xx in (2 * x, 2 * x + 1)
                                     if yy < a.shape[0] and xx < a.shape[1]], nd)
    return out


def _whole_level(a: np.ndarray, nd: int = ND) -> np.ndarray:
    """The next level of a whole image by the general rule (itself checked against brute force below)."""
    if a.shape[0] % 2:
        a = np.concatenate([a, np.full((1, a.shape[1]), nd, a.dtype)])
    return mode2x2(a, nd)


@settings(max_examples=60, deadline=None)
@given(st.integers(1, 9), st.integers(1, 9), st.integers(0, 2**32 - 1))
def test_mode2x2_is_the_brute_force_mode(h, w, seed):
    rng = np.random.default_rng(seed)
    a = rng.choice(np.array([0, 1, 2, ND], np.uint8), size=(2 * h, w), p=[0.35, 0.3, 0.2, 0.15])
    np.testing.assert_array_equal(mode2x2(a, ND), _brute_level(a))


@settings(max_examples=60, deadline=None)
@given(st.integers(1, 9), st.integers(1, 40), st.integers(1, 15), st.integers(0, 2**32 - 1))
def test_table_path_is_the_brute_force_mode(h, w, classes, seed):
    rng = np.random.default_rng(seed)
    values = np.array([*range(classes), ND], np.uint8)
    a = rng.choice(values, size=(2 * h, w))
    np.testing.assert_array_equal(mode2x2(a, ND, classes), _brute_level(a))
    np.testing.assert_array_equal(mode2x2(a[:, ::-1], ND, classes), _brute_level(a[:, ::-1]))  # not contiguous


def test_table_path_agrees_with_the_comparisons_on_every_window():
    codes = np.array([*range(15), ND], np.uint8)
    key = np.arange(1 << 16)
    a = np.empty((2, 2 << 16), np.uint8)  # all 16^4 windows of 15 classes + nodata
    a[0, 0::2], a[0, 1::2], a[1, 0::2], a[1, 1::2] = (codes[(key >> s) & 15] for s in (0, 4, 8, 12))
    np.testing.assert_array_equal(mode2x2(a, ND, classes=15), mode2x2(a, ND))
    np.testing.assert_array_equal(mode2x2(a[:, :-1], ND, classes=15), mode2x2(a[:, :-1], ND))  # odd width


def test_more_classes_than_the_table_holds_take_the_general_path():
    a = np.array([[20, 20, 16, 3], [1, 2, 16, 3]], np.uint8)
    assert mode2x2(a, ND, classes=21).tolist() == [[20, 16]]


def test_ties_go_to_the_first_pixel_and_nodata_never_votes():
    a = np.array([[1, 2, ND, ND, ND, 3],
                  [2, 1, ND, 4, ND, ND]], np.uint8)
    assert mode2x2(a, ND).tolist() == [[1, 4, 3]]


@settings(max_examples=25, deadline=None)
@given(st.integers(1, 70), st.integers(1, 70), st.integers(1, 9), st.integers(0, 2**32 - 1))
def test_pyramid_streams_the_same_levels_as_whole_images(height, width, chunk, seed):
    block = 8  # small blocks: several levels from a small image
    rng = np.random.default_rng(seed)
    img = rng.choice(np.array([0, 1, 2, ND], np.uint8), size=(height, width))
    got: list[list[tuple[int, np.ndarray]]] = [[] for _ in level_shapes(height, width, block)]
    pyr = ModePyramid(height, width, block, ND, [lambda r0, rows, i=i: got[i].append((r0, rows))
                                                  for i in range(len(got))])
    for y in range(0, height, chunk):
        pyr.add(img[y:y + chunk])
    assert pyr.complete
    expected = img
    for i, shape in enumerate(pyr.shapes):
        expected = _brute_level(expected)
        assert expected.shape == shape
        assert [r0 for r0, _ in got[i]] == list(np.cumsum([0] + [r.shape[0] for _, r in got[i]])[:-1])
        np.testing.assert_array_equal(np.concatenate([r for _, r in got[i]]), expected, err_msg=f"level {i + 1}")


def test_level_shapes_halve_until_one_block():
    assert level_shapes(8192, 8192, 512) == [(4096, 4096), (2048, 2048), (1024, 1024), (512, 512)]
    assert level_shapes(1500, 513, 512) == [(750, 257), (375, 129)]
    assert level_shapes(512, 300, 512) == []


@pytest.fixture
def blocky():
    rng = np.random.default_rng(3)
    h, w = 2600, 1900
    cells = rng.integers(0, 4, (h // 37 + 1, w // 37 + 1)).astype(np.uint8)
    img = cells[np.arange(h) // 37][:, np.arange(w) // 37]
    img[:, :150] = ND
    return img


@pytest.mark.parametrize("classes", [None, 4])  # the general rule, the table
def test_cog_carries_the_streamed_mode_overviews(tmp_path, blocky, classes):
    h, w = blocky.shape
    grid = Grid(w, h, CRS.from_epsg(32633), Affine(10, 0, 500000, 0, -10, 6000000))
    spec = OutputSpec(tmp_path / "m.tif", 1, "uint8", ND, colormap={0: (0, 0, 0, 255), 1: (255, 0, 0, 255)},
                      descriptions=("class",), tags={"SEGPIPE_TILE": "512"}, classes=classes)
    sink = GeoTiffSink(spec, grid)
    for y in range(0, h, 448):
        sink.write(y, blocky[y:y + 448])
    path = sink.finish()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.tif"]  # no temporaries left
    assert cog_problems(path) == []
    with rasterio.open(path) as ds:
        assert ds.overviews(1) == [2, 4, 8] and ds.nodata == ND
        assert ds.colormap(1)[1] == (255, 0, 0, 255) and ds.descriptions == ("class",)
        assert ds.tags()["SEGPIPE_TILE"] == "512" and ds.crs == grid.crs and ds.transform == grid.transform
        np.testing.assert_array_equal(ds.read(1), blocky)
    expected = blocky
    for level in range(3):
        expected = _whole_level(expected)
        with rasterio.open(path, overview_level=level) as ov:
            np.testing.assert_array_equal(ov.read(1), expected, err_msg=f"overview {level}")
    # and GDAL's own mode agrees on the first level (same rule; it may differ deeper down)
    gdal = tmp_path / "gdal.tif"
    with rasterio.open(path) as src:
        profile = src.profile | {"driver": "GTiff"}
        with rasterio.open(gdal, "w", **profile) as dst:
            dst.write(src.read())
    with rasterio.open(gdal, "r+") as dst:
        dst.build_overviews([2], rasterio.enums.Resampling.mode)
    with rasterio.open(gdal, overview_level=0) as a, rasterio.open(path, overview_level=0) as b:
        assert (a.read(1) == b.read(1)).mean() > 0.999


def test_abort_removes_every_temporary(tmp_path, blocky):
    h, w = blocky.shape
    sink = GeoTiffSink(OutputSpec(tmp_path / "m.tif", 1, "uint8", ND),
                       Grid(w, h, CRS.from_epsg(32633), Affine(10, 0, 500000, 0, -10, 6000000)))
    sink.write(0, blocky[:1024])
    assert len(list(tmp_path.iterdir())) == 4  # full resolution + 3 overview levels, all hidden partials
    sink.abort()
    assert list(tmp_path.iterdir()) == []
    assert BLOCK == 512


def test_an_error_in_the_overview_thread_surfaces_and_leaves_nothing(tmp_path, blocky, monkeypatch):
    def broken(self, rows):
        raise MemoryError("no room for the overview")

    monkeypatch.setattr(ModePyramid, "add", broken)
    h, w = blocky.shape
    sink = GeoTiffSink(OutputSpec(tmp_path / "m.tif", 1, "uint8", ND, classes=4),
                       Grid(w, h, CRS.from_epsg(32633), Affine(10, 0, 500000, 0, -10, 6000000)))
    with pytest.raises(MemoryError, match="no room"):
        for y in range(0, h, 448):
            sink.write(y, blocky[y:y + 448])
        sink.finish()
    sink.abort()  # what the engine does with every sink of a failed run
    assert list(tmp_path.iterdir()) == []


def test_a_sink_that_cannot_be_made_takes_the_others_down_cleanly(make_tif, tmp_path, monkeypatch):
    """The mask sink is made, the confidence sink fails: no temporary file and no thread is left."""
    import threading

    from pipeline.errors import OutputError
    from pipeline.sinks.geotiff import cog as write
    from pipeline.run.geotiff import segment_scene
    from pipeline.options import RunOptions

    from .conftest import identity_handle

    real = write._TiledFile.__init__
    made = []

    def fail_second(self, path, *a, **kw):
        if made and ".confidence" not in str(path) and "_confidence" in str(path):
            raise OutputError(f"{path.parent}: cannot create output file (disk full)")
        made.append(path)
        real(self, path, *a, **kw)

    monkeypatch.setattr(write._TiledFile, "__init__", fail_second)
    path = make_tif(np.random.default_rng(0).random((3, 700, 600)).astype(np.float32))
    before = {t.name for t in threading.enumerate()}
    with pytest.raises(OutputError, match="disk full"):
        segment_scene(path, identity_handle(tile=128, overlap=32), tmp_path / "out",
                      RunOptions(device="cpu", confidence=True), qa=False)
    assert not (tmp_path / "out" / "scene").exists()
    assert not list((tmp_path / "out" / ".segpipe" / "staging").iterdir())
    assert not any(t.name.startswith("segpipe-overviews") for t in threading.enumerate()
                   if t.name not in before)


def test_a_uint16_class_map_gets_its_streamed_overviews_too(tmp_path):
    rng = np.random.default_rng(4)
    h, w = 1100, 1030  # two overview levels
    cells = rng.integers(0, 300, (h // 37 + 1, w // 37 + 1)).astype(np.uint16)  # > 255 classes
    img = cells[np.arange(h) // 37][:, np.arange(w) // 37]
    img[:, :90] = 65535
    sink = GeoTiffSink(OutputSpec(tmp_path / "m.tif", 1, "uint16", 65535, classes=300),
                       Grid(w, h, CRS.from_epsg(32633), Affine(10, 0, 500000, 0, -10, 6000000)))
    for y in range(0, h, 448):
        sink.write(y, img[y:y + 448])
    path = sink.finish()
    assert cog_problems(path) == []
    with rasterio.open(path) as ds:
        assert ds.dtypes[0] == "uint16" and ds.overviews(1) == [2, 4]
        np.testing.assert_array_equal(ds.read(1), img)
    expected = img
    for level in range(2):
        expected = _whole_level(expected, nd=65535)
        with rasterio.open(path, overview_level=level) as ov:
            np.testing.assert_array_equal(ov.read(1), expected, err_msg=f"overview {level}")
