"""Per-label voxel counts and mL from the header zooms."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from pipeline.readers.nifti import read_volume
from pipeline.sinks.nifti import LabelVolumes, label_volumes

ZOOMS = (0.7, 0.7, 5.0)  # 2.45 mm^3 per voxel


def box_labels(shape=(20, 24, 16)):
    labels = np.zeros(shape, np.uint8)
    labels[2:5, 3:7, 4:9] = 2  # 3 x 4 x 5 = 60 voxels
    labels[10, 10, 10] = 1
    return labels


def test_box_volume_in_ml():
    res = label_volumes(box_labels(), ZOOMS, ("background", "vessel", "tumour"))
    assert res["voxel_volume_mm3"] == pytest.approx(2.45)
    by_name = {d["name"]: d for d in res["labels"]}
    assert by_name["tumour"]["voxels"] == 60
    assert by_name["tumour"]["volume_ml"] == pytest.approx(60 * 2.45 / 1000)  # 0.147 mL
    assert by_name["vessel"]["volume_ml"] == pytest.approx(0.00245)
    assert res["voxels"] == 20 * 24 * 16


def test_slice_by_slice_equals_whole():
    labels = box_labels()
    acc = LabelVolumes(ZOOMS, ("background", "vessel", "tumour"))
    for k in range(labels.shape[1]):
        acc.add(labels[:, k, :])
    assert acc.result() == label_volumes(labels, ZOOMS, ("background", "vessel", "tumour"))


def test_absent_named_labels_report_zero_and_unnamed_labels_appear():
    labels = np.array([[[0, 0, 5]]], np.uint8)
    res = label_volumes(labels, (1, 1, 1), ("background", "a", "b"))
    assert [(d["value"], d["name"], d["voxels"]) for d in res["labels"]] == [
        (0, "background", 2), (1, "a", 0), (2, "b", 0), (5, "label_5", 1)]


def test_invalid_voxels_are_not_counted():
    labels = box_labels()
    valid = np.ones(labels.shape, bool)
    valid[2, 3, 4] = False
    res = label_volumes(labels, ZOOMS, ("bg", "v", "t"), valid)
    assert res["labels"][2]["voxels"] == 59 and res["invalid_voxels"] == 1


def test_ml_from_a_real_header_with_anisotropic_zooms(make_nifti, int16_volume):
    vol = read_volume(make_nifti("aniso.nii.gz", int16_volume, "psr"))  # zooms (0.7, 0.8, 2.5) permuted
    labels = np.zeros(vol.shape, np.uint8)
    labels[:2, :3, :4] = 1
    res = label_volumes(labels, vol.zooms)
    assert res["voxel_volume_mm3"] == pytest.approx(0.7 * 0.8 * 2.5)
    assert res["labels"][-1]["volume_ml"] == pytest.approx(24 * 1.4 / 1000)


@settings(max_examples=40, deadline=None)
@given(hnp.arrays(np.uint8, hnp.array_shapes(min_dims=3, max_dims=3, max_side=6), elements=st.integers(0, 7)))
def test_counts_sum_to_the_number_of_voxels(labels):
    res = label_volumes(labels, (1.0, 2.0, 0.5))
    assert sum(d["voxels"] for d in res["labels"]) == labels.size
    assert sum(d["volume_ml"] for d in res["labels"]) == pytest.approx(labels.size / 1000)


def test_bad_zooms_and_labels():
    with pytest.raises(ValueError, match="positive voxel spacings"):
        LabelVolumes((1.0, 0.0, 1.0))
    with pytest.raises(ValueError, match="integers"):
        LabelVolumes((1, 1, 1)).add(np.zeros((2, 2), np.float32))
