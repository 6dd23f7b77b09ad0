"""Slice axis choice, 2.5D slabs with replicated edges, and slice assembly."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pipeline.engine.bands import PROB_NODATA
from pipeline.readers.nifti.slicing import batches, context_indices, default_slice_axis, plane_shape, slab, slab_planes
from pipeline.sinks.nifti import SliceAssembler, encode_unit


@pytest.mark.parametrize(("zooms", "axis"), [
    ((0.7, 0.7, 5.0), 2), ((3.0, 1.0, 1.0), 0), ((1.0, 4.0, 1.0), 1),
    ((1.0, 1.0, 1.0), 2), ((2.0, 2.0, 1.0), 1), ((2.2, 1.0, 2.1999990940093994), 2),
])
def test_default_slice_axis(zooms, axis):
    assert default_slice_axis(zooms) == axis


def test_slab_shape_values_and_replicated_edges():
    data = np.arange(4 * 5 * 6, dtype=np.float32).reshape(4, 5, 6)
    out = slab(data, 2, [0, 3, 5], context=3)
    assert out.shape == (3, 3, 4, 5) and out.dtype == np.float32 and out.flags.c_contiguous
    np.testing.assert_array_equal(out[0, 0], data[:, :, 0])  # edge replicated
    np.testing.assert_array_equal(out[0, 1], data[:, :, 0])
    np.testing.assert_array_equal(out[0, 2], data[:, :, 1])
    np.testing.assert_array_equal(out[1, 0], data[:, :, 2])
    np.testing.assert_array_equal(out[2, 2], data[:, :, 5])  # edge replicated at the top
    out0 = slab(data, 0, [1], context=5)
    assert out0.shape == (1, 5, 5, 6)
    np.testing.assert_array_equal(out0[0, 0], data[0])  # index -1 clamped to 0
    np.testing.assert_array_equal(out0[0, 4], data[3])


@settings(max_examples=50, deadline=None)
@given(shape=st.tuples(*[st.integers(1, 7)] * 3), axis=st.integers(0, 2), context=st.sampled_from([1, 3, 5, 7]),
       data=st.data())
def test_slab_channel_j_is_slice_k_plus_offset_clamped(shape, axis, context, data):
    vol = np.random.default_rng(0).random(shape).astype(np.float32)
    n = shape[axis]
    idx = data.draw(st.lists(st.integers(0, n - 1), min_size=1, max_size=4))
    out = slab(vol, axis, idx, context)
    assert out.shape == (len(idx), context) + plane_shape(shape, axis)
    for i, k in enumerate(idx):
        for j in range(context):
            src = min(max(k - context // 2 + j, 0), n - 1)
            np.testing.assert_array_equal(out[i, j], np.take(vol, src, axis=axis))


def test_slab_planes_hold_each_slice_once():
    data = np.arange(4 * 5 * 6, dtype=np.float32).reshape(4, 5, 6)
    planes, where = slab_planes(data, 2, [0, 1, 2, 3], context=5)
    assert planes.shape == (6, 4, 5) and where.shape == (4, 5)  # 6 distinct planes for 20 channels
    np.testing.assert_array_equal(planes[where], slab(data, 2, [0, 1, 2, 3], 5))


def test_context_must_be_odd_and_indices_in_range():
    with pytest.raises(ValueError, match="odd"):
        context_indices([0], 2, 5)
    with pytest.raises(IndexError):
        context_indices([5], 3, 5)


@settings(max_examples=30, deadline=None)
@given(shape=st.tuples(*[st.integers(1, 6)] * 3), axis=st.integers(0, 2), size=st.integers(1, 4))
def test_assembler_rebuilds_the_volume_from_batches(shape, axis, size):
    labels = np.random.default_rng(1).integers(0, 4, shape).astype(np.uint8)
    asm = SliceAssembler(shape, axis)
    for idx in reversed(list(batches(shape[axis], size))):  # any order
        x = slab(labels, axis, idx, 3)
        asm.put(idx, x[:, 1].astype(np.uint8))
    np.testing.assert_array_equal(asm.result(), labels)


def test_assembler_reports_missing_slices():
    asm = SliceAssembler((3, 4, 5), 2)
    asm.put([0, 1], np.zeros((2, 3, 4), np.uint8))
    assert asm.missing.tolist() == [2, 3, 4]
    with pytest.raises(RuntimeError, match="3 of 5 slices"):
        asm.result()
    with pytest.raises(ValueError, match="expected slices of shape"):
        asm.put([2], np.zeros((1, 4, 3), np.uint8))


def test_encode_unit():
    p = np.array([0.0, 0.5, 1.0, 1.5, -0.1, np.nan], np.float32)
    valid = np.array([True, True, True, True, True, True])
    valid_out = np.array([True, False, True, True, True, True])
    np.testing.assert_array_equal(encode_unit(p, valid), [0, 127, 254, 254, 0, PROB_NODATA])
    assert encode_unit(p, valid_out)[1] == PROB_NODATA
