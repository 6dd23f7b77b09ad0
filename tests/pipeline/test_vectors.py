"""``--vectors``: one polygon per connected region, merged exactly across row bands, areas that add up."""

from __future__ import annotations

import json
from collections import Counter

import numpy as np
import pyogrio
import pyogrio.raw
import pytest
import rasterio
import shapely
from affine import Affine
from hypothesis import given, settings
from hypothesis import strategies as st
from pyproj import Geod
from scipy import ndimage

from pipeline.errors import ConfigError, InputError
from pipeline.options import RunOptions
from pipeline.run.geotiff import segment_scene
from pipeline.sinks.vectors.regions import RegionTracker

from .conftest import identity_handle

CPU = dict(device="cpu", workers=2)


def _regions(labels: np.ndarray, classes, bands: list[int]) -> list:
    """(region, its outline by the coverage union of its noded pieces) of every region."""
    tracker, out, y = RegionTracker(classes), [], 0
    for h in bands:
        out += tracker.add(y, labels[y:y + h], None)
        y += h
    return [(r, r.polygon(tracker.seams)) for r in out + tracker.finish()]


def _split(height: int, cuts: list[int]) -> list[int]:
    edges = sorted({0, height, *(c % height for c in cuts)})
    return [b - a for a, b in zip(edges, edges[1:])]


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 10_000), h=st.integers(1, 40), w=st.integers(1, 30), k=st.integers(2, 4),
       cuts=st.lists(st.integers(0, 1000), max_size=8))
def test_banded_regions_are_the_whole_image_regions(seed, h, w, k, cuts):
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, k, (h, w)).astype(np.uint8)
    labels = ndimage.median_filter(labels, 2) if seed % 2 else labels  # blobs as well as noise
    labels[rng.random((h, w)) < 0.05] = 255  # nodata is never a region
    classes = list(range(1, k))
    banded = _regions(labels, classes, _split(h, cuts))
    whole = _regions(labels, classes, [h])
    expected = sum(ndimage.label(labels == c)[1] for c in classes)  # 4-connected components
    assert len(banded) == len(whole) == expected
    key = lambda rp: (rp[0].cls, rp[0].pixels, shapely.normalize(rp[1]).wkb)  # noqa: E731
    assert sorted(map(key, banded)) == sorted(map(key, whole))
    for r, poly in banded:
        assert poly.geom_type == "Polygon" and poly.is_valid and poly.area == r.pixels
        assert shapely.normalize(poly).wkb == shapely.normalize(r.polygon()).wkb  # = the general union's


def _shapes_scene(h: int = 230, w: int = 200) -> np.ndarray:
    """Class ids with regions that cross many row bands: a U (its arms join at the bottom), a ring
    with a hole spanning bands, two squares touching only at a corner, and noise."""
    labels = np.zeros((h, w), np.uint8)
    labels[10:200, 10:30] = 1
    labels[10:200, 60:80] = 1
    labels[180:200, 10:80] = 1  # the U's bottom: one region, found at row 180
    labels[30:170, 100:180] = 2
    labels[60:140, 120:160] = 0  # the ring's hole
    labels[205:215, 100:110] = 3
    labels[215:225, 110:120] = 3  # corner contact only: two regions
    labels[5:8, 190:195] = 2
    return labels


def _scene_from_labels(make_tif, labels: np.ndarray, k: int = 4, **kw):
    scores = np.stack([(labels == c).astype(np.float32) for c in range(k)])  # the identity model's argmax
    return make_tif(scores, **kw)


def _features(path):
    meta, _, geoms, fields = pyogrio.raw.read(path)
    cols = dict(zip(meta["fields"], fields))
    return meta, shapely.from_wkb(geoms), cols


def test_every_region_is_one_feature_with_its_class_area_and_confidence(make_tif, tmp_path):
    labels = _shapes_scene()
    path = _scene_from_labels(make_tif, labels)
    res = segment_scene(path, identity_handle(4), tmp_path / "out", RunOptions(vectors=True, tile=64, overlap=16,
                                                                              **CPU))
    meta, geoms, cols = _features(res.outputs["vectors"])
    assert res.outputs["vectors"].name == "scene_vectors.gpkg" and meta["geometry_type"] == "Polygon"
    assert pyogrio.read_info(res.outputs["vectors"])["crs"] == "EPSG:32633"
    assert Counter(cols["class_name"].tolist()) == {"c1": 1, "c2": 2, "c3": 2}  # background (c0) left out
    with rasterio.open(res.outputs["mask"]) as ds:
        mask = ds.read(1)
    np.testing.assert_array_equal(mask, labels)
    for c in (1, 2, 3):
        sel = cols["class_id"] == c
        raster_m2 = (mask == c).sum() * 100.0  # 10 m pixels
        assert abs(cols["area_m2"][sel].sum() - raster_m2) <= 0.005 * raster_m2
        assert abs(sum(g.area for g in geoms[sel]) - raster_m2) <= 0.005 * raster_m2  # the outlines too
    assert all(g.is_valid for g in geoms) and np.all((cols["mean_confidence"] > 0.9) & (cols["mean_confidence"] <= 1))
    ring = geoms[(cols["class_id"] == 2) & (cols["pixels"] > 100)][0]
    assert len(ring.interiors) == 1 and ring.area == (140 * 80 - 80 * 40) * 100.0
    minx, miny, maxx, maxy = ring.bounds  # in map coordinates: x = 500000 + 10 col, y = 6000000 - 10 row
    assert (minx, maxy, maxx, miny) == (501000.0, 5999700.0, 501800.0, 5998300.0)
    facts = res.record["facts"]["vectors"]
    assert facts["features"] == 5 and facts["features_per_class"] == {"c1": 1, "c2": 2, "c3": 2}
    checks = {c["name"]: c for c in json.loads((res.scene_dir / "qa.json").read_text())["checks"]}
    assert checks["vectors"]["status"] == "pass" and checks["vectors"]["detail"] == "5 feature(s): c1 1, c2 2, c3 2"


def test_areas_on_a_geographic_crs_are_ellipsoidal(make_tif, tmp_path):
    labels = _shapes_scene()
    transform = Affine(0.001, 0, 10.0, 0, -0.001, 60.0)  # ~55 x 111 m pixels at 60 N
    path = _scene_from_labels(make_tif, labels, crs="EPSG:4326", transform=transform)
    res = segment_scene(path, identity_handle(4), tmp_path / "out", RunOptions(vectors=True, tile=64, overlap=16,
                                                                              **CPU))
    _, _, cols = _features(res.outputs["vectors"])
    geod = Geod(ellps="WGS84")
    for c in (1, 2, 3):
        rows = (labels == c).sum(axis=1)
        lat_top = 60.0 - 0.001 * np.arange(labels.shape[0])
        pixel_m2 = np.array([abs(geod.polygon_area_perimeter([10, 10.001, 10.001, 10], [t, t, t - 0.001, t - 0.001])[0])
                             for t in lat_top])
        raster_m2 = float((rows * pixel_m2).sum())
        got = cols["area_m2"][cols["class_id"] == c].sum()
        assert abs(got - raster_m2) <= 0.005 * raster_m2, (c, got, raster_m2)


def test_classes_minimum_area_and_simplification(make_tif, tmp_path):
    labels = _shapes_scene()
    path = _scene_from_labels(make_tif, labels)
    res = segment_scene(path, identity_handle(4), tmp_path / "a", RunOptions(
        vectors=True, vector_classes=("c2", "1"), vector_min_area=2000, vector_simplify=3, **CPU))
    _, geoms, cols = _features(res.outputs["vectors"])
    assert sorted(cols["class_name"].tolist()) == ["c1", "c2"]  # the 15-pixel c2 speck (1500 m2) is under 2000 m2
    assert res.record["facts"]["vectors"]["left_out_below_min_area"] == 1
    stairs = np.zeros((120, 120), np.uint8)
    stairs[np.tril_indices(120)] = 1  # a triangle with a staircase edge: 2 vertices per row
    res = segment_scene(_scene_from_labels(make_tif, stairs, name="stairs.tif"), identity_handle(4), tmp_path / "s",
                        RunOptions(vectors=True, vector_simplify=1.5, tile=64, overlap=16, **CPU))
    _, (tri,), cols = _features(res.outputs["vectors"])
    assert cols["area_m2"][0] == stairs.sum() * 100.0  # the region's area, not the simplified outline's
    assert tri.is_valid and len(tri.exterior.coords) <= 6 and abs(tri.area - stairs.sum() * 100.0) < 0.02 * tri.area
    with pytest.raises(ConfigError, match="vector class 'lake' is not a class of the model; its classes are 0=c0"):
        segment_scene(path, identity_handle(4), tmp_path / "b", RunOptions(vectors=True, vector_classes=("lake",),
                                                                           **CPU))


def test_a_failed_run_leaves_no_vector_file(make_tif, tmp_path):
    data = (np.random.default_rng(0).random((3, 256, 256)) * 60000).astype(np.uint16)
    path = make_tif(data, compress="deflate")
    with open(path, "r+b") as f:
        f.truncate(path.stat().st_size // 2)
    with pytest.raises(InputError):
        segment_scene(path, identity_handle(), tmp_path / "out", RunOptions(vectors=True, **CPU))
    out = tmp_path / "out"  # the run was staged (pipeline.run.folder): no scene folder, no vector file anywhere
    assert not (out / "scene").exists() and not [p for p in out.rglob("*") if ".gpkg" in p.name]
