"""The slice engine's one-tile-per-slice path gives what the streaming stitcher gives."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from pipeline.infer import Predictor
from pipeline.qa.tally import BandTallier
from pipeline.spec import ModelSpec
from pipeline.tiling import TileGrid
from pipeline.volume.engine import SliceEngine

K = 4


def _engine(shape_hw, tile, whole_planes: bool | None = None, probabilities: bool = True) -> SliceEngine:
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3, padding=1), torch.nn.ReLU(), torch.nn.Conv2d(8, K, 3, padding=1))
    spec = ModelSpec(3, (1,), tuple("abcd"), context=3, tile=tile, overlap=16)
    pred = Predictor(net, spec, torch.device("cpu"))
    grid = TileGrid.build(*shape_hw, tile, 16)
    eng = SliceEngine(pred, grid, K, blend="gaussian", context=3, batch_size=4, confidence=True,
                      probabilities=probabilities, reducers=[BandTallier(K)])
    if whole_planes is not None:  # force one path or the other
        eng.whole_planes = whole_planes
    return eng


@pytest.mark.parametrize("with_invalid", [False, True])
def test_whole_plane_batches_equal_the_stitcher(with_invalid):
    rng = np.random.default_rng(0)
    data = rng.normal(size=(10, 40, 48)).astype(np.float32)  # 10 slices along axis 0, planes 40 x 48
    valid = None
    if with_invalid:
        valid = np.ones(data.shape, bool)
        valid[3, 5:20, 7:30] = False
        valid[7] = False  # a slice with no valid voxel
    runs = []
    for whole in (True, False):
        eng = _engine((40, 48), 64, whole)
        runs.append(list(eng.run(data, valid, 0, lambda p: p)))
    fast, slow = runs
    assert [f.index for f in fast] == [s.index for s in slow] == list(range(10))
    for f, s in zip(fast, slow):
        np.testing.assert_array_equal(f.valid, s.valid)
        np.testing.assert_array_equal(f.labels, s.labels)
        assert np.abs(f.confidence.astype(int) - s.confidence.astype(int)).max() <= 1  # p vs (p * w) / w
        assert np.abs(f.probabilities.astype(int) - s.probabilities.astype(int)).max() <= 1
        assert f.entropy_sum == pytest.approx(s.entropy_sum, rel=1e-5)
        assert f.valid_pixels == s.valid_pixels == int(s.valid.sum())
        for key in ("valid", "seam_cols", "seam_rows"):
            np.testing.assert_array_equal(f.tallies[key], s.tallies[key], err_msg=key)
        np.testing.assert_array_equal(f.tallies["joint"].sum(axis=1), s.tallies["joint"].sum(axis=1))
        expected = BandTallier(K).host(0, f.labels, f.valid, f.confidence)
        for key, value in expected.items():
            np.testing.assert_array_equal(f.tallies[key], value, err_msg=key)
    if with_invalid:
        assert fast[7].valid_pixels == 0 and (fast[7].labels == 0).all() and (fast[7].confidence == 255).all()


def test_the_path_follows_the_tiling():
    assert _engine((40, 48), 64).whole_planes  # one tile per slice
    assert not _engine((100, 90), 64).whole_planes  # several tiles: blended by the stitcher
