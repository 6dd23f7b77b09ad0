import numpy as np
import pytest
import torch

from pipeline.engine.normalize import normalise, normalise_array, stats_for, volume_stats
from pipeline.spec import Normalization


def apply_torch(x, stats):
    return normalise(x, stats, x.shape[1])


def test_percentile_maps_the_scene_percentiles_to_0_and_1_and_clips():
    band = np.arange(1000, dtype=np.float32).reshape(1, 10, 100)  # values 0..999
    norm = Normalization(kind="percentile", low=10, high=90)
    st = stats_for(norm, 1, band)
    lo, hi = np.percentile(band, [10, 90])
    x = torch.tensor([[[[lo, hi, -50.0, 5000.0]]]], dtype=torch.float32)
    out = apply_torch(x, st)[0, 0, 0].tolist()
    assert out == pytest.approx([0.0, 1.0, 0.0, 1.0], abs=1e-6)


@pytest.mark.parametrize("kind", ["percentile", "zscore"])
def test_scenes_and_volumes_normalise_the_same_values_identically(kind):
    rng = np.random.default_rng(0)
    values = rng.normal(100.0, 30.0, size=(8, 16, 16)).astype(np.float32)
    norm = Normalization(kind=kind, low=1, high=99)
    scene = apply_torch(torch.from_numpy(values.reshape(1, 1, 8, 256).copy()),
                        stats_for(norm, 1, values.reshape(1, 8, 256)))[0, 0].numpy()
    volume = normalise_array(values, volume_stats(values, norm)).reshape(8, 256)
    np.testing.assert_allclose(scene, volume, rtol=1e-5, atol=1e-5)


def test_invalid_pixels_are_left_out_of_the_statistics():
    band = np.concatenate([np.full(500, -9999.0), np.arange(500.0)]).astype(np.float32).reshape(1, 10, 100)
    valid = (band[0] != -9999.0)
    st = stats_for(Normalization(kind="percentile", low=0, high=100), 1, band, valid)
    assert st.offset[0] == 0.0 and 1 / st.divisor[0] == pytest.approx(1 / 499)
