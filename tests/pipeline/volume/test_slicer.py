"""``NAME_labels.seg.nrrd``: read back with slicerio (Slicer's own reader) and pynrrd; geometry, voxels, segments."""

from __future__ import annotations

import nibabel as nib
import nrrd
import numpy as np
import pytest
import slicerio

from pipeline.options import RunOptions
from pipeline.run.nifti import segment_volume

from .conftest import GEOMETRIES, write_nifti
from .test_run import CPU, THRESHOLD, handle

RAS_TO_LPS = np.diag([-1.0, -1.0, 1.0, 1.0])


@pytest.mark.parametrize("geometry", ["lps", "oblique", "psr"])
def test_the_segmentation_overlays_the_label_volume_with_named_coloured_segments(tmp_path, geometry):
    rng = np.random.default_rng(2)
    data = rng.integers(0, 600, (20, 24, 16)).astype(np.int16)
    data[:, :, 12:] = 0  # no class 1 in the last slices: the segment's extent stops before them
    qform, sform = GEOMETRIES[geometry]
    src = write_nifti(tmp_path / "ct.nii.gz", data, qform=qform, sform=sform)
    model = handle()
    res = segment_volume(src, model, tmp_path / "out", RunOptions(**CPU))
    seg_path = res.scene_dir / "ct_labels.seg.nrrd"
    nifti = nib.load(str(res.outputs["labels"]))
    labels = np.asarray(nifti.dataobj)
    np.testing.assert_array_equal(labels, data > THRESHOLD)

    seg = slicerio.read_segmentation(str(seg_path))
    np.testing.assert_array_equal(seg["voxels"], labels)  # same voxels, same (file) order
    np.testing.assert_allclose(seg["ijkToLPS"], RAS_TO_LPS @ nifti.affine, atol=1e-5)  # same place in space
    (segment,) = seg["segments"]
    assert segment["name"] == "bright" and segment["labelValue"] == 1 and segment["layer"] == 0
    np.testing.assert_allclose(segment["color"], np.array(model.spec.colors()[1]) / 255.0, atol=1e-5)
    idx = np.nonzero(labels == 1)
    assert segment["extent"] == [int(v) for a in idx for v in (a.min(), a.max())] and segment["extent"][5] < 12

    _, header = nrrd.read(str(seg_path))  # the raw NRRD fields Slicer reads on drag and drop
    assert header["space"] == "left-posterior-superior" and header["Segment0_Name"] == "bright"
    assert header["Segmentation_MasterRepresentation"] == "Binary labelmap"
    assert header["sizes"].tolist() == list(labels.shape) and header["encoding"] == "gzip"
    np.testing.assert_allclose(header["space origin"], (RAS_TO_LPS @ nifti.affine)[:3, 3], atol=1e-5)


def test_a_class_absent_from_the_volume_is_an_empty_segment(tmp_path):
    qform, sform = GEOMETRIES["ras"]
    src = write_nifti(tmp_path / "dark.nii.gz", np.zeros((20, 24, 16), np.int16), qform=qform, sform=sform)
    res = segment_volume(src, handle(), tmp_path / "out", RunOptions(**CPU))
    (segment,) = slicerio.read_segmentation(str(res.scene_dir / "dark_labels.seg.nrrd"))["segments"]
    assert segment["name"] == "bright" and segment["extent"] == [0, -1, 0, -1, 0, -1]
