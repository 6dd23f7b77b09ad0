"""QA tallies computed by the stitcher on its device equal QA's own count of the host arrays.

The GPU path (tallies shipped with each band) and the host path (SceneQA counting the
arrays itself) must give the same report; these run both on the CPU, where they share
the torch code but not the band boundaries, prev-row hand-over or slice joining.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from pipeline.qa import SceneQA
from pipeline.qa.tally import BandTallier
from pipeline.engine.stitch import Stitcher
from pipeline.run.planes import join
from pipeline.tiling import TileGrid

K = 3


def _bands(grid: TileGrid, seed: int, invalid_box: tuple[slice, slice] | None, reducers=()):
    """Stitch random class scores over ``grid`` on the CPU; the box is nodata."""
    rng = np.random.default_rng(seed)
    scores = torch.from_numpy(rng.random((K, grid.height, grid.width), dtype=np.float32))
    valid = torch.ones((grid.height, grid.width), dtype=torch.bool)
    if invalid_box is not None:
        valid[invalid_box] = False
    st = Stitcher(grid, K, "gaussian", torch.device("cpu"), nodata=255, label_dtype=torch.uint8, confidence=True,
                  reducers=reducers)
    bands = []
    for tile in grid:
        w = tile.window
        win = (slice(w.row_off, w.row_off + w.height), slice(w.col_off, w.col_off + w.width))
        probs = torch.zeros((K, grid.read_h, grid.read_w))
        probs[:, : w.height, : w.width] = scores[(slice(None), *win)]
        ok = torch.zeros((grid.read_h, grid.read_w), dtype=torch.bool)
        ok[: w.height, : w.width] = valid[win]
        st.add(0, tile, probs, ok)
        if tile.col == len(grid.col_offsets) - 1:
            bands.extend(st.close_strip().resolve())
    return bands


@pytest.mark.parametrize("invalid_box", [None, (slice(30, 70), slice(0, 25))])
def test_scene_report_is_the_same_with_device_tallies(invalid_box):
    grid = TileGrid.build(150, 131, 64, 16)
    with_t = SceneQA(("a", "b", "c"), 150, 131, grid)
    bands = _bands(grid, 1, invalid_box, reducers=[with_t.band_reducer()])
    assert len(bands) > 2 and all(set(b.tallies) == {"joint", "valid", "seam_cols", "seam_rows", "unsure_cells"}
                                  for b in bands)
    host = SceneQA(("a", "b", "c"), 150, 131, grid)
    for b in bands:
        with_t(b)
        host.observe(b.row0, b.labels, b.valid, b.confidence, b.entropy_sum)  # no tallies: counted here
    a, h = with_t.result(), host.result()
    assert a.classes == h.classes
    assert a.confidence == h.confidence and a.seams == h.seams
    np.testing.assert_array_equal(a.unsure_thumb, h.unsure_thumb)
    assert a.valid_pixels == h.valid_pixels == sum(b.valid_pixels for b in bands)
    # ... and both equal a plain numpy count of the whole image
    labels = np.concatenate([b.labels for b in bands])
    valid = np.concatenate([b.valid for b in bands])
    assert [c.pixels for c in a.classes] == [int(np.sum((labels == c) & valid)) for c in range(K)]
    assert a.valid_pixels == int(valid.sum())
    horiz = (labels[:, 1:] != labels[:, :-1]) & valid[:, 1:] & valid[:, :-1]
    vert = (labels[1:] != labels[:-1]) & valid[1:] & valid[:-1]
    assert a.seams.border_pairs + a.seams.interior_pairs == int(
        (valid[:, 1:] & valid[:, :-1]).sum() + (valid[1:] & valid[:-1]).sum())
    assert int(horiz.sum() + vert.sum()) > 0
    assert a.seams.border_rate * (a.seams.border_pairs + 1) - 1 + a.seams.interior_rate * (
        a.seams.interior_pairs + 1) - 1 == pytest.approx(int(horiz.sum() + vert.sum()))


def test_a_slice_made_of_several_bands_joins_its_tallies():
    grid = TileGrid.build(150, 131, 64, 16)  # three grid rows: three bands per slice
    tallier = BandTallier(K)
    for seed in (1, 2):  # two slices: the second starts a new plane (row 0), no pairing with the first
        bands = _bands(grid, seed, (slice(10, 20), slice(100, 131)), reducers=[tallier])
        fs = join(bands)
        expected = BandTallier(K).host(0, fs.labels, fs.valid, fs.confidence)
        assert fs.valid_pixels == int(fs.valid.sum())
        for key, value in expected.items():
            np.testing.assert_array_equal(fs.tallies[key], value, err_msg=key)


def test_joint_histogram_counts_class_and_confidence_bytes():
    labels = np.array([[0, 1, 2, 255], [1, 1, 7, 0]], dtype=np.uint8)  # 255: nodata, 7: stray value
    valid = np.array([[True, True, True, False], [True, True, True, True]])
    conf = np.array([[10, 20, 30, 255], [20, 21, 99, 10]], dtype=np.uint8)
    t = BandTallier(K).host(0, labels, valid, conf)
    joint = t["joint"]
    assert joint.shape == (K + 1, 256) and joint.sum() == labels.size
    assert joint[0, 10] == 2 and joint[1, 20] == 2 and joint[1, 21] == 1 and joint[2, 30] == 1
    assert joint[K, 255] == 1 and joint[K, 99] == 1  # invalid and out-of-range pixels: not a class
    assert int(t["valid"]) == 7
    # horizontal pairs (both valid) per column; vertical pairs per row (none for the plane's first row)
    assert t["seam_cols"].tolist() == [[0, 2, 2, 1], [0, 1, 2, 1]]
    assert t["seam_rows"].tolist() == [[0, 3], [0, 2]]


@pytest.mark.parametrize("size", [1, 7, 1024, 3 * 1024 * 256])
def test_sync_free_counts_equal_bincount(size):
    """The GPU's sync-free histogram (float64 histc, unit bins) counts exactly what bincount does."""
    rng = np.random.default_rng(size)
    idx = torch.from_numpy(rng.integers(0, size, 50_000).astype(np.int32))
    idx[:3] = size - 1  # both ends of the range
    idx[3:5] = 0
    exact = torch.bincount(idx, minlength=size)
    from pipeline.qa.tally import bin_counts

    got = bin_counts(idx, size, sync_free=True)
    assert got.dtype == torch.int64 and got.shape == (size,)
    torch.testing.assert_close(got, exact, rtol=0, atol=0)
