"""SceneQA, seams and area on arrays (no files)."""

import numpy as np
import pytest
from affine import Affine
from rasterio.crs import CRS

from pipeline.qa import SceneQA, SeamAccumulator, pixel_area, voxel_volume
from pipeline.qa.seams import border_lines
from pipeline.tiling import TileGrid


def _feed(qa, labels, valid, conf=None, step=7):
    for y in range(0, labels.shape[0], step):
        qa.observe(y, labels[y:y + step], valid[y:y + step], None if conf is None else conf[y:y + step])


def test_border_lines_are_tile_starts_and_ends():
    g = TileGrid.build(200, 200, 64, 16)  # offsets 0, 48, 96, 136
    assert g.col_offsets == (0, 48, 96, 136)
    assert border_lines(g.col_offsets, 64, 200).tolist() == [48, 64, 96, 112, 136, 160]
    assert border_lines((0,), 50, 50).tolist() == []


def test_seam_score_counts_disagreement_on_tile_lines():
    g = TileGrid.build(128, 128, 32, 0)
    rng = np.random.default_rng(0)
    noise = rng.integers(0, 2, (128, 128)).astype(np.uint8)
    valid = np.ones_like(noise, bool)
    acc = SeamAccumulator(g)
    acc.update(0, noise[:50], valid[:50])
    acc.update(50, noise[50:], valid[50:])
    assert acc.result().score == pytest.approx(1.0, abs=0.1)  # random labels: no line is special
    # Each tile its own constant class: changes only on tile borders.
    tiles = ((np.arange(128)[:, None] // 32) + (np.arange(128)[None, :] // 32)) % 2
    acc = SeamAccumulator(g)
    acc.update(0, tiles.astype(np.uint8), valid)
    r = acc.result()
    assert r.interior_changes == 0 and r.border_changes == r.border_pairs > 0
    assert r.score > 1000
    one = SeamAccumulator(TileGrid.build(20, 20, 32, 0))
    one.update(0, noise[:20, :20], valid[:20, :20])
    assert one.result().score is None


def test_scene_counts_fractions_confidence_and_thumbnails():
    rng = np.random.default_rng(1)
    h, w = 90, 70
    labels = rng.integers(0, 3, (h, w)).astype(np.uint8)
    valid = rng.random((h, w)) > 0.2
    labels[~valid] = 255
    conf = rng.integers(0, 255, (h, w)).astype(np.uint8)
    conf[~valid] = 255
    qa = SceneQA(("a", "b", "c"), h, w, TileGrid.build(h, w, 32, 8),
                 pixel_area(CRS.from_epsg(32633), Affine(2, 0, 0, 0, -2, 0), w, h), thumb_side=32)
    _feed(qa, labels, valid, conf)
    s = qa.result(low_confidence=0.5)
    truth = np.bincount(labels[valid], minlength=3)
    assert [c.pixels for c in s.classes] == truth.tolist()
    assert s.classes[2].area_m2 == truth[2] * 4.0
    assert s.valid_fraction == pytest.approx(valid.mean())
    p = conf[valid] / 254.0
    assert s.confidence.mean == pytest.approx(p.mean())
    assert s.confidence.low_fraction == pytest.approx((p < 0.5).mean())
    assert sum(s.confidence.histogram) == valid.sum()
    m1 = valid & (labels == 1)
    assert s.classes[1].mean_confidence == pytest.approx((conf[m1] / 254.0).mean())
    assert s.label_thumb.shape == s.unsure_thumb.shape == (32, 25)
    assert all(c.touches_nodata for c in s.classes)
    # per-class histograms: each class's valid pixels, binned like the overall histogram
    assert [sum(c.confidence_histogram) for c in s.classes] == truth.tolist()
    assert np.sum([c.confidence_histogram for c in s.classes], axis=0).tolist() == s.confidence.histogram


@pytest.mark.parametrize("step", [1, 5, 7, 90])
def test_unsure_thumbnail_counts_every_pixel_of_each_cell(step):
    """The share of unsure pixels per thumbnail cell, over all rows (bands of any height), exact."""
    rng = np.random.default_rng(2)
    h, w = 90, 70
    labels = rng.integers(0, 2, (h, w)).astype(np.uint8)
    valid = rng.random((h, w)) > 0.1
    valid[:12, :10] = False  # cells with no valid pixel
    conf = rng.integers(127, 255, (h, w)).astype(np.uint8)
    conf[39:42, :] = 20  # a thin unsure line: image rows 39-41 are thumbnail row 13
    conf[~valid] = 255
    qa = SceneQA(("a", "b"), h, w, thumb_side=30, unsure_below=0.6)
    _feed(qa, labels, valid, conf, step=step)
    s = qa.result()
    th, tw = s.unsure_thumb.shape
    assert (th, tw) == (30, 23) and s.unsure_threshold == 0.6
    ry, cx = np.arange(h) * th // h, np.arange(w) * tw // w
    low = valid & (conf < 0.6 * 254)
    for i, j in [(0, 0), (13, 5), (13, 20), (29, 22), (14, 0)]:
        cell = (ry[:, None] == i) & (cx[None, :] == j)
        n = (cell & valid).sum()
        if n == 0:
            assert np.isnan(s.unsure_thumb[i, j])
        else:
            assert s.unsure_thumb[i, j] == pytest.approx((cell & low).sum() / n)
    assert np.nanmin(s.unsure_thumb[13]) == 1.0 and np.nanmax(s.unsure_thumb[12]) < 1.0


def test_unsure_cells_from_the_device_tallier_equal_the_host_count():
    """A band tallied by the stitcher's reducer (any device) gives the same picture as the host path."""
    import torch

    rng = np.random.default_rng(3)
    h, w = 64, 48
    labels = rng.integers(0, 2, (h, w)).astype(np.uint8)
    valid = rng.random((h, w)) > 0.3
    conf = rng.integers(0, 255, (h, w)).astype(np.uint8)
    a, b = SceneQA(("a", "b"), h, w, thumb_side=20), SceneQA(("a", "b"), h, w, thumb_side=20)
    reducer = a.band_reducer()
    for y in range(0, h, 9):
        sl = slice(y, y + 9)
        t = reducer(y, torch.from_numpy(labels[sl]), torch.from_numpy(valid[sl]), torch.from_numpy(conf[sl]))
        a.observe(y, labels[sl], valid[sl], conf[sl], tallies={k: v.numpy() for k, v in t.items()})
        b.observe(y, labels[sl], valid[sl], conf[sl])
    np.testing.assert_array_equal(a.result().unsure_thumb, b.result().unsure_thumb)


def test_rows_out_of_order_are_refused():
    qa = SceneQA(("a", "b"), 10, 10)
    qa.observe(0, np.zeros((5, 10), np.uint8), np.ones((5, 10), bool))
    with pytest.raises(ValueError, match="in order"):
        qa.observe(6, np.zeros((4, 10), np.uint8), np.ones((4, 10), bool))
    with pytest.raises(ValueError, match="5 of 10"):
        qa.result()


def test_volume_slices_give_ml_and_3d_components():
    vol = np.zeros((6, 20, 20), np.uint8)
    vol[1:5, 5:10, 5:10] = 1  # one 100-voxel blob through 4 slices
    vol[0, 0, 0] = 2  # touches the edge
    qa = SceneQA.for_volume(vol.shape, 0.002, ("bg", "organ", "lesion"), TileGrid.build(20, 20, 32, 0))
    for z in range(6):
        qa.observe_slice(z, vol[z], np.ones((20, 20), bool))
    s = qa.result()
    organ, lesion = s.classes[1], s.classes[2]
    assert (organ.pixels, organ.components, organ.largest_component) == (100, 1, 100)
    assert organ.volume_ml == pytest.approx(0.2) and organ.area_m2 is None
    assert not organ.touches_border and lesion.touches_border
    assert s.area.unit == "ml" and s.kind == "volume"
    with pytest.raises(ValueError, match="slices"):
        qa.observe(0, vol[0], np.ones((20, 20), bool))


def test_area_units():
    t = Affine(3, 0, 0, 0, -3, 0)
    assert pixel_area(CRS.from_epsg(32633), t, 10, 10).per_pixel == 9.0
    feet = pixel_area(CRS.from_epsg(2229), t, 10, 10)  # US survey feet
    assert feet.per_pixel == pytest.approx(9 * 0.3048006096 ** 2)
    none = pixel_area(None, t, 10, 10)
    assert none.unit == "pixel" and none.approximate and "no CRS" in none.note
    assert voxel_volume(0.001).per_pixel == 0.001 and voxel_volume(0).unit == "pixel"
    geo = pixel_area(CRS.from_epsg(4326), Affine(0.001, 0, 0, 0, -0.001, 60.0), 10, 1000)
    north, south = geo.rows(0, 1)[0], geo.rows(999, 1)[0]
    assert geo.approximate and south > north  # rows nearer the equator cover more ground


def test_threaded_and_component_free_modes_agree():
    rng = np.random.default_rng(3)
    h, w = 120, 90
    labels = rng.integers(0, 3, (h, w)).astype(np.uint8)
    labels[:, 40:45] = 255
    valid = labels != 255
    conf = rng.integers(0, 255, (h, w)).astype(np.uint8)
    grid = TileGrid.build(h, w, 32, 8)
    plain, threaded, lean = (SceneQA(("a", "b", "c"), h, w, grid, **kw)
                             for kw in ({}, {"threaded": True}, {"components": False}))
    for qa in (plain, threaded, lean):
        _feed(qa, labels, valid, conf, step=11)
    p, t, n = plain.result(), threaded.result(), lean.result()
    assert p.classes == t.classes and p.confidence == t.confidence and p.seams == t.seams
    assert all(c.components is None and c.largest_component is None for c in n.classes)
    assert [c.touches_border for c in n.classes] == [c.touches_border for c in p.classes] == [True] * 3
    assert [c.pixels for c in n.classes] == [c.pixels for c in p.classes]


def test_threaded_errors_surface():
    qa = SceneQA(("a", "b"), 10, 10, threaded=True)
    with pytest.raises(ValueError, match="band shapes differ"):  # raised by the next call after the thread failed
        qa.observe(0, np.zeros((5, 10), np.uint8), np.ones((5, 9), bool))  # shape mismatch
        qa.observe(5, np.zeros((5, 10), np.uint8), np.ones((5, 10), bool))
        qa.result()


@pytest.mark.parametrize("step_mpix", [64.0, 0.005])  # full resolution, and every 2nd row/column
def test_volume_components_by_slabs_equal_whole_volume_labelling(step_mpix):
    from scipy import ndimage

    rng = np.random.default_rng(4)
    vol = (rng.random((21, 30, 28)) > 0.55).astype(np.uint8) + (rng.random((21, 30, 28)) > 0.8)  # 21: not a slab multiple
    qa = SceneQA.for_volume(vol.shape, 0.001, ("a", "b", "c"), TileGrid.build(30, 28, 32, 0),
                            components_max_mpix=step_mpix)
    for z in range(vol.shape[0]):
        qa.observe_slice(z, vol[z], np.ones(vol.shape[1:], bool))
    s = qa.result()
    step = qa.components_step
    assert step == (1 if step_mpix == 64.0 else 2)
    sub = vol[:, ::step, ::step]
    for c in range(3):
        lab, n = ndimage.label(sub == c)
        sizes = np.bincount(lab.ravel())[1:]
        assert s.classes[c].components == n
        assert s.classes[c].largest_component == sizes.max() * step**2
