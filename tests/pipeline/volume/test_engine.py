"""The engine's lone-tile path (a plane one tile covers, finished a batch at a time) gives what blending gives."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from pipeline.engine import Engine, Predictor, Stitcher, stats_for
from pipeline.qa.tally import BandTallier
from pipeline.readers.nifti import Volume, VolumeSource
from pipeline.readers.nifti.orient import orientation_of
from pipeline.spec import ModelSpec, Normalization
from pipeline.threads import StopToken
from pipeline.tiling import TileGrid

K = 4


def _volume(data: np.ndarray, valid: np.ndarray | None) -> Volume:
    import nibabel as nib

    hdr = nib.Nifti1Header()
    hdr.set_data_shape(data.shape)
    return Volume(data=data, valid=valid, n_invalid=0, orientation=orientation_of(np.eye(4), data.shape),
                  zooms=(1.0, 1.0, 1.0), header=hdr, affine=np.eye(4), source_shape=data.shape,
                  source_dtype="float32", scaling=(1.0, 0.0), slice_axis=0, path=__import__("pathlib").Path("v.nii"))


def _run(data, valid, tile: int, lone: bool | None = None):
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3, padding=1), torch.nn.ReLU(), torch.nn.Conv2d(8, K, 3, padding=1))
    spec = ModelSpec(3, (1,), tuple("abcd"), context=3, tile=tile, overlap=16)
    pred = Predictor(net, spec, torch.device("cpu"), "fp32")
    grid = TileGrid.build(*data.shape[1:], tile, 16)
    st = Stitcher(grid, K, "gaussian", torch.device("cpu"), nodata=0, label_dtype=torch.uint8, confidence=True,
                  probabilities=True, reducers=[BandTallier(K)])
    eng = Engine(pred, VolumeSource(_volume(data, valid), 3), grid, stats_for(Normalization(), 1), batch_size=4,
                 stitcher=st, stop=StopToken())
    if lone is not None:  # force one path or the other
        eng.lone = lone
    out = []
    eng.run(lambda pending: out.extend(pending.resolve()))
    return eng, out


@pytest.mark.parametrize("with_invalid", [False, True])
def test_whole_plane_batches_equal_the_stitcher(with_invalid):
    rng = np.random.default_rng(0)
    data = rng.normal(size=(10, 40, 48)).astype(np.float32)  # 10 slices along axis 0, planes 40 x 48
    valid = None
    if with_invalid:
        valid = np.ones(data.shape, bool)
        valid[3, 5:20, 7:30] = False
        valid[7] = False  # a slice with no valid voxel
    (_, fast), (_, slow) = _run(data, valid, 64, True), _run(data, valid, 64, False)
    assert [f.plane for f in fast] == [s.plane for s in slow] == list(range(10))
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
    rng = np.random.default_rng(1)
    eng, bands = _run(rng.normal(size=(3, 40, 48)).astype(np.float32), None, 64)
    assert eng.lone and len(bands) == 3  # one tile per slice: finished a batch of planes at a time
    eng, bands = _run(rng.normal(size=(2, 100, 90)).astype(np.float32), None, 64)
    assert not eng.lone and len(bands) == 2 * eng.grid.n_rows  # several tiles: blended, one band per strip
