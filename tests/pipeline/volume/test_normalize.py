"""Volume normalisation: known values, known distributions, slab-wise == whole-volume."""

from __future__ import annotations

import numpy as np
import pytest

from pipeline.errors import ConfigError
from pipeline.spec import Normalization
from pipeline.engine.normalize import normalise_array, sample_stride, volume_stats
from pipeline.readers.nifti.slicing import slab

def apply(x, norm, stats):
    """The engine's map on a host array, with the statistics of ``norm``'s kind."""
    if stats.kind != norm.kind:
        raise ValueError(f"stats are for {stats.kind!r} but the normalization is {norm.kind!r}")
    return normalise_array(x, stats)


KINDS = [
    Normalization("none"),
    Normalization("scale", factor=1 / 1000, offset=0.5),
    Normalization("meanstd", mean=(40.0,), std=(350.0,)),
    Normalization("ct_window", window_low=-160.0, window_high=240.0),
    Normalization("zscore", low=0.5, high=99.5),
    Normalization("zscore", low=1.0, high=99.0, nonzero=True),
    Normalization("percentile", low=2.0, high=98.0),
]


@pytest.fixture
def ct():
    rng = np.random.default_rng(3)
    vol = rng.normal(40, 300, size=(24, 20, 18)).astype(np.float32)
    vol[:3] = 0.0  # a zero background block for the nonzero mask
    return vol


def test_ct_window_maps_low_to_0_high_to_1(ct):
    norm = Normalization("ct_window", window_low=-1000.0, window_high=1000.0)
    stats = volume_stats(ct, norm)
    x = np.array([-3000, -1000, 0, 500, 1000, 3000], dtype=np.float32)
    np.testing.assert_array_equal(apply(x, norm, stats), [0.0, 0.0, 0.5, 0.75, 1.0, 1.0])
    assert apply(x, norm, stats).dtype == np.float32


def test_ct_window_odd_bounds_still_exact():
    norm = Normalization("ct_window", window_low=-160.0, window_high=240.0)
    out = apply(np.array([-160.0, 240.0, 40.0], np.float32), norm, volume_stats(np.zeros(1), norm))
    np.testing.assert_array_equal(out, [0.0, 1.0, 0.5])


def test_zscore_on_a_known_distribution():
    rng = np.random.default_rng(0)
    x = rng.normal(100.0, 15.0, size=(40, 40, 40)).astype(np.float32)  # 64000 voxels: stride 1, exact
    norm = Normalization("zscore", low=0.0, high=100.0)  # no clipping: a plain z-score
    stats = volume_stats(x, norm)
    assert stats.to_record()["stride"] == 1 and stats.to_record()["n_samples"] == x.size
    assert stats.to_record()["mean"] == pytest.approx(float(x.astype(np.float64).mean()), rel=1e-9)
    assert stats.to_record()["std"] == pytest.approx(float(x.astype(np.float64).std()), rel=1e-9)
    assert stats.to_record()["mean"] == pytest.approx(100.0, abs=0.5) and stats.to_record()["std"] == pytest.approx(15.0, abs=0.5)
    z = apply(x, norm, stats)
    assert float(z.mean()) == pytest.approx(0.0, abs=1e-4) and float(z.std()) == pytest.approx(1.0, abs=1e-4)


def test_zscore_clips_to_percentiles_first():
    x = np.concatenate([np.zeros(98), [1000.0, -1000.0]]).astype(np.float32).reshape(10, 10, 1)
    x[0, 0, 0] = 1.0
    norm = Normalization("zscore", low=5.0, high=95.0)
    stats = volume_stats(x, norm)
    assert stats.to_record()["low_value"] == 0.0 and stats.to_record()["high_value"] == 0.0  # outliers do not move the stats
    assert stats.to_record()["divisor"] == 1.0  # std of a constant -> no scaling, not a division by zero
    out = apply(x, norm, stats)
    np.testing.assert_array_equal(out, np.zeros_like(x))


def test_zscore_nonzero_mask(ct):
    norm = Normalization("zscore", low=0.0, high=100.0, nonzero=True)
    stats = volume_stats(ct, norm)
    inside = ct[ct != 0].astype(np.float64)
    assert stats.to_record()["n_samples"] == inside.size
    assert stats.to_record()["mean"] == pytest.approx(inside.mean()) and stats.to_record()["std"] == pytest.approx(inside.std())
    out = apply(ct, norm, stats)
    assert (out[:3] == 0).all()  # background stays 0
    assert float(out[ct != 0].mean()) == pytest.approx(0.0, abs=1e-4)


def test_invalid_voxels_are_left_out_of_statistics(ct):
    valid = np.ones(ct.shape, bool)
    poisoned = ct.copy()
    poisoned[5:8] = -1e6  # NaN replaced by a fill value by the reader
    valid[5:8] = False
    norm = Normalization("zscore", low=0.0, high=100.0)
    clean = {k: v for k, v in volume_stats(ct[valid].reshape(-1, 1, 1), norm).to_record().items() if k in ("mean", "std")}
    got = volume_stats(poisoned, norm, valid)
    assert got.to_record()["mean"] == pytest.approx(clean["mean"]) and got.to_record()["std"] == pytest.approx(clean["std"])


@pytest.mark.parametrize("norm", KINDS, ids=lambda n: f"{n.kind}{'-nz' if n.nonzero else ''}")
def test_slabwise_equals_whole_volume(ct, norm):
    stats = volume_stats(ct, norm)
    whole = apply(ct, norm, stats)
    for axis in range(3):
        for start in range(0, ct.shape[axis], 7):
            idx = np.arange(start, min(start + 7, ct.shape[axis]))
            part = apply(slab(ct, axis, idx, 3), norm, stats)  # (n, 3, H, W)
            ref = slab(whole, axis, idx, 3)
            np.testing.assert_array_equal(part, ref)


def test_strided_subsample_is_bounded_and_close():
    rng = np.random.default_rng(1)
    x = rng.gamma(2.0, 50.0, size=(64, 64, 48)).astype(np.float32)
    norm = Normalization("zscore", low=0.5, high=99.5)
    exact = volume_stats(x, norm)
    sub = volume_stats(x, norm, max_voxels=20_000)
    assert sub.to_record()["stride"] > 1 and sub.to_record()["n_samples"] <= 20_000
    assert sub.to_record()["mean"] == pytest.approx(exact.to_record()["mean"], rel=0.02)
    assert sub.to_record()["std"] == pytest.approx(exact.to_record()["std"], rel=0.03)


@pytest.mark.parametrize(("shape", "cap"), [((10, 10, 10), 1000), ((512, 512, 400), 1 << 21), ((7, 300, 5), 100)])
def test_sample_stride_bound(shape, cap):
    s = sample_stride(shape, cap)
    assert np.prod([-(-n // s) for n in shape]) <= cap
    assert s == 1 or np.prod([-(-n // (s - 1)) for n in shape]) > cap  # the smallest such stride


def test_stats_must_match_the_normalization(ct):
    stats = volume_stats(ct, Normalization("ct_window"))
    with pytest.raises(ValueError, match="stats are for"):
        apply(ct, Normalization("zscore"), stats)
    with pytest.raises(ConfigError, match="one channel"):
        volume_stats(ct, Normalization("meanstd", mean=(1.0, 2.0), std=(1.0, 1.0)))
