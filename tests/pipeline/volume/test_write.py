"""Writing label volumes: identity round trip in every orientation, header fidelity, sidecars."""

from __future__ import annotations

import json

import nibabel as nib
import numpy as np
import pytest

from pipeline.engine.bands import PROB_NODATA
from pipeline.errors import GeometryError, OutputError
from pipeline.readers.nifti import default_slice_axis, iter_volumes, read_volume, slab, slab_valid
from pipeline.sinks.nifti import SliceAssembler, encode_unit
from pipeline.sinks.nifti import write as write_mod
from pipeline.sinks.nifti.write import write_label_volume

from .conftest import GEOMETRIES, SHAPE

THRESHOLD = 100.25  # between representable values of every test volume: no float32/64 ties
NAMES = ("background", "bright")


def stored_header(path) -> nib.Nifti1Header:
    """The header exactly as on disk (nib.load resets scl_slope/scl_inter to NaN)."""
    klass = type(nib.load(str(path)))
    with nib.openers.ImageOpener(str(path)) as f:
        return klass.header_class.from_fileobj(f)


def assert_same_geometry(out_path, in_path):
    out, src = nib.load(str(out_path)), nib.load(str(in_path))
    assert out.shape == src.shape[:3]
    np.testing.assert_allclose(out.affine, src.affine, atol=1e-6)
    for form in ("qform", "sform"):
        (m_out, c_out), (m_in, c_in) = (getattr(h, f"get_{form}")(coded=True) for h in (out.header, src.header))
        assert int(c_out) == int(c_in), form
        if m_in is None:
            assert m_out is None
        else:
            np.testing.assert_allclose(m_out, m_in, atol=1e-6)
    np.testing.assert_allclose(out.header.get_zooms()[:3], src.header.get_zooms()[:3])
    assert out.header.get_xyzt_units() == src.header.get_xyzt_units()
    assert type(out) is type(src)


def threshold_model(vol, axis: int, context: int = 3, batch: int = 5) -> np.ndarray:
    """Stand-in 2.5D model: thresholds the centre channel of each slab, assembled back."""
    asm = SliceAssembler(vol.shape, axis)
    for start in range(0, vol.shape[axis], batch):
        idx = np.arange(start, min(start + batch, vol.shape[axis]))
        x = slab(vol.data, axis, idx, context)
        asm.put(idx, (x[:, context // 2] > THRESHOLD).astype(np.uint8))
    return asm.result()


@pytest.mark.parametrize("geometry", sorted(GEOMETRIES))
def test_identity_round_trip_every_orientation(make_nifti, int16_volume, tmp_path, geometry):
    src = make_nifti(f"in_{geometry}.nii.gz", int16_volume, geometry, slope=0.5, inter=20.0)
    vol = read_volume(src)
    labels = threshold_model(vol, default_slice_axis(vol.zooms))
    out = write_label_volume(tmp_path / "out" / f"labels_{geometry}", labels, vol, label_names=NAMES)
    assert out.name == f"labels_{geometry}.nii.gz"
    expected = nib.load(str(src)).get_fdata() > THRESHOLD  # the original on-disk array, thresholded
    written = nib.load(str(out))
    got = np.asarray(written.dataobj)
    assert 0 < expected.sum() < expected.size
    np.testing.assert_array_equal(got, expected.astype(np.uint8))
    assert_same_geometry(out, src)


def test_output_header_fields(make_nifti, int16_volume, tmp_path):
    src = make_nifti("ct.nii.gz", int16_volume, "q1_s2_differ", slope=0.5, inter=-1024.0)
    vol = read_volume(src)
    out = write_label_volume(tmp_path / "seg.nii.gz", (vol.data > 0).astype(np.int64), vol, label_names=NAMES)
    hdr = stored_header(out)
    assert hdr.get_data_dtype() == np.uint8
    assert (float(hdr["scl_slope"]), float(hdr["scl_inter"])) == (1.0, 0.0)
    assert int(hdr["intent_code"]) == 1002 and hdr.get_intent()[0] == "label"
    assert hdr["intent_name"].item() == b"segpipe labels"
    assert (float(hdr["cal_min"]), float(hdr["cal_max"])) == (0.0, 1.0)
    assert b"ct.nii.gz" in hdr["descrip"].item()
    assert int(hdr["qform_code"]) == 1 and int(hdr["sform_code"]) == 2
    np.testing.assert_array_equal(hdr["pixdim"], vol.header["pixdim"])
    assert not any(p.name.startswith(".") for p in tmp_path.iterdir())  # no temp file left


def test_uint16_past_255_labels(make_nifti, int16_volume, tmp_path):
    vol = read_volume(make_nifti("many.nii.gz", int16_volume, "psr"))
    labels = (np.arange(np.prod(vol.shape)) % 300).reshape(vol.shape)
    out = write_label_volume(tmp_path / "many_labels", labels, vol)
    img = nib.load(str(out))
    assert img.get_data_dtype() == np.uint16
    np.testing.assert_array_equal(vol.orientation.to_canonical(np.asarray(img.dataobj)), labels)


def test_squeezed_and_selected_4d_write_3d(make_nifti, int16_volume, tmp_path):
    single = make_nifti("single.nii.gz", int16_volume[..., None], "oblique")
    series = make_nifti("series.nii.gz", np.stack([int16_volume] * 3, -1), "sheared")
    for src in (single, series):
        vol = read_volume(src, volume=0)
        out = write_label_volume(tmp_path / f"o_{src.name}", (vol.data > THRESHOLD).astype(np.uint8), vol)
        img = nib.load(str(out))
        assert img.shape == SHAPE and img.header["dim"][0] == 3
        np.testing.assert_array_equal(np.asarray(img.dataobj), (int16_volume > THRESHOLD).astype(np.uint8))
        assert_same_geometry(out, src)


@pytest.mark.parametrize("name", ["anatomical.nii", "reoriented_anat_moved.nii",
                                  "example4d.nii.gz", "example_nifti2.nii.gz"])
def test_nibabel_volumes_round_trip(nibabel_data, tmp_path, name):
    src = nibabel_data / name
    for vol in iter_volumes(src, series_policy="each"):
        thr = float(np.float32(np.median(vol.data) + 0.25))  # exact in float32 and float64
        labels = (vol.data > thr).astype(np.uint8)
        out = write_label_volume(tmp_path / f"{vol.volume_index}_{name}", labels, vol, label_names=NAMES)
        expected = nib.load(str(src)).get_fdata()
        expected = expected if vol.volume_index is None else expected[..., vol.volume_index]
        np.testing.assert_array_equal(np.asarray(nib.load(str(out)).dataobj), (expected > thr).astype(np.uint8))
        assert_same_geometry(out, src)


def test_label_sidecars(make_nifti, int16_volume, tmp_path):
    vol = read_volume(make_nifti("a.nii.gz", int16_volume))
    names = ("background", "left kidney", "liver")
    labels = np.zeros(vol.shape, np.uint8)
    labels[2:5, 3:6, 4:8] = 2
    out = write_label_volume(tmp_path / "case.nii.gz", labels, vol, label_names=names,
                             colors=[(0, 0, 0), (255, 0, 0), (0, 128, 255)])
    doc = json.loads((tmp_path / "case.labels.json").read_text())
    assert doc["kind"] == "labels" and doc["volume"] == out.name
    assert doc["labels"][2] == {"value": 2, "name": "liver", "color": [0, 128, 255]}
    ctbl = (tmp_path / "case.ctbl").read_text().splitlines()
    assert "1 left_kidney 255 0 0 255" in ctbl and "2 liver 0 128 255 255" in ctbl
    body = [ln.split() for ln in (tmp_path / "case.itksnap.txt").read_text().splitlines() if not ln.startswith("#")]
    assert body[1][:7] == ["1", "255", "0", "0", "1.00", "1", "1"] and " ".join(body[1][7:]) == '"left kidney"'


def test_confidence_volume(make_nifti, int16_volume, tmp_path):
    data = int16_volume.astype(np.float32)
    data[0, 0, 0] = np.nan
    with pytest.warns(Warning):
        vol = read_volume(make_nifti("c.nii.gz", data, "lps"))
    p = np.clip((vol.data + 200) / 1000, 0, 1)
    codes = encode_unit(p, vol.valid)
    out = write_label_volume(tmp_path / "conf", codes, vol, kind="confidence")
    hdr = stored_header(out)
    assert hdr.get_data_dtype() == np.uint8 and (float(hdr["cal_min"]), float(hdr["cal_max"])) == (0.0, 254.0)
    back = np.asarray(nib.load(str(out)).dataobj)
    assert back[0, 0, 0] == PROB_NODATA and (back[1:] <= 254).all()
    assert json.loads((tmp_path / "conf.labels.json").read_text())["encoding"]["nodata"] == 255
    assert not (tmp_path / "conf.ctbl").exists()
    with pytest.raises(ValueError, match="uint8 codes"):
        write_label_volume(tmp_path / "p", p, vol, kind="probability")


def test_geometry_mismatch_removes_output(make_nifti, int16_volume, tmp_path, monkeypatch):
    vol = read_volume(make_nifti("g.nii.gz", int16_volume, "q1_s2_differ"))
    real = write_mod._output_header

    def buggy(*a, **kw):  # a writer bug: sform code lost
        hdr = real(*a, **kw)
        hdr["sform_code"] = 1
        return hdr

    monkeypatch.setattr(write_mod, "_output_header", buggy)
    out_dir = tmp_path / "out"
    with pytest.raises(GeometryError, match=r"seg.nii.gz.*sform_code 1 != 2"):
        write_label_volume(out_dir / "seg", np.zeros(vol.shape, np.uint8), vol, label_names=NAMES)
    assert list(out_dir.iterdir()) == []  # no volume, no temp file, no sidecars


def test_unwritable_folder(make_nifti, int16_volume, tmp_path):
    vol = read_volume(make_nifti("w.nii.gz", int16_volume))
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(OutputError, match="file"):
        write_label_volume(blocker / "sub" / "seg", np.zeros(vol.shape, np.uint8), vol)


def test_wrong_inputs_are_refused(make_nifti, int16_volume, tmp_path):
    vol = read_volume(make_nifti("r.nii.gz", int16_volume))
    with pytest.raises(ValueError, match="canonical array of shape"):
        write_label_volume(tmp_path / "x", np.zeros((2, 2, 2), np.uint8), vol)
    with pytest.raises(ValueError, match="label names"):
        write_label_volume(tmp_path / "x", np.full(vol.shape, 5, np.uint8), vol, label_names=NAMES)
    with pytest.raises(ValueError, match="integer"):
        write_label_volume(tmp_path / "x", np.zeros(vol.shape, np.float32), vol)


def test_uncompressed_output_when_asked(make_nifti, int16_volume, tmp_path):
    vol = read_volume(make_nifti("u.nii", int16_volume))
    out = write_label_volume(tmp_path / "seg.nii", np.zeros(vol.shape, np.uint8), vol)
    assert out.name == "seg.nii" and out.read_bytes()[344:348] == b"n+1\0"


def test_slab_valid_marks_invalid_voxels(make_nifti, int16_volume):
    data = int16_volume.astype(np.float32)
    data[3, 4, 5] = np.nan
    with pytest.warns(Warning):
        vol = read_volume(make_nifti("v.nii.gz", data, "ras"))
    m = slab_valid(vol.valid, vol.shape, 2, [5, 6])
    assert m.shape == (2, SHAPE[0], SHAPE[1]) and not m[0, 3, 4] and m.sum() == m.size - 1
