"""The sample-data generator: geometry, ground truth, determinism, seamless streaming."""

from __future__ import annotations

import itertools
import math

import nibabel as nib
import numpy as np
import pytest
import rasterio
from hypothesis import given, settings
from hypothesis import strategies as st
from nibabel.orientations import apply_orientation, inv_ornt_aff, io_orientation
from rasterio.crs import CRS
from rasterio.transform import Affine

from data.synthetic import scenes
from data.synthetic import (CLASS_COLORS, CLASS_NAMES, LABEL_HU, LABEL_NAMES, MASK_NODATA, main, write_scene,
                            write_volume)
from pipeline.errors import ConfigError


def _read(path):
    with rasterio.open(path) as src:
        return src.read()


@pytest.fixture(scope="module")
def scene512(tmp_path_factory):
    """One 512 x 512 uint16 scene with its mask, shared by the read-only checks."""
    d = tmp_path_factory.mktemp("scene")
    info = write_scene(d / "s.tif", 512, 512, seed=3, mask_path=d / "s_mask.tif", block=256)
    return info, _read(info.path), _read(info.mask_path)[0]


# ---------------------------------------------------------------- scenes


def test_scene_geometry_and_creation_options(scene512):
    info, _, _ = scene512
    with rasterio.open(info.path) as src:
        assert src.crs == CRS.from_epsg(32633) and src.crs.is_projected
        assert src.transform == Affine(10, 0, 399960, 0, -10, 5300040) == info.transform
        assert (src.count, src.height, src.width) == (4, 512, 512)
        assert src.dtypes == ("uint16",) * 4
        assert src.nodata == 0 and info.nodata == 0
        assert src.profile["tiled"] and src.block_shapes == [(256, 256)] * 4
        assert src.tags(ns="IMAGE_STRUCTURE")["COMPRESSION"] == "DEFLATE"
        assert src.tags(ns="IMAGE_STRUCTURE")["PREDICTOR"] == "2"
    with rasterio.open(info.mask_path) as m:
        assert m.dtypes == ("uint8",) and m.nodata == MASK_NODATA
        assert (m.crs, m.transform, m.shape) == (CRS.from_epsg(32633), info.transform, (512, 512))
        cmap = m.colormap(1)
        assert all(cmap[i][:3] == CLASS_COLORS[i] for i in range(len(CLASS_NAMES)))


def test_every_class_present_with_a_distinct_mean_spectrum(scene512):
    _, x, y = scene512
    shares = np.array([(y == k).mean() for k in range(len(CLASS_NAMES))])
    assert (shares > 0.03).all(), shares
    means = np.array([x[:, y == k].mean(axis=1) for k in range(len(CLASS_NAMES))])
    for a, b in itertools.combinations(range(len(CLASS_NAMES)), 2):
        # 500 = 0.05 reflectance: far above pixel noise, so spectra alone separate the classes.
        assert np.linalg.norm(means[a] - means[b]) > 500, (CLASS_NAMES[a], CLASS_NAMES[b], means)
    assert means[2, 3] / means[2, 2] > 5 > 2 > means[0, 3] / means[0, 2]  # vegetation: NIR >> red, soil not
    assert means[1].max() < means[0].min()  # water: dark in every band
    assert x[x != 0].max() <= 10000


@pytest.mark.parametrize("bands", [1, 3, 6])
def test_other_band_counts_keep_classes_apart(tmp_path, bands):
    info = write_scene(tmp_path / "s.tif", 384, 384, bands=bands, seed=3, mask_path=tmp_path / "m.tif")
    x, y = _read(info.path), _read(info.mask_path)[0]
    means = np.array([x[:, y == k].mean(axis=1) for k in range(len(CLASS_NAMES))])
    gaps = [np.linalg.norm(means[a] - means[b]) for a, b in itertools.combinations(range(len(CLASS_NAMES)), 2)]
    assert min(gaps) > 300, means  # 0.03 reflectance; one band: four distinct brightness levels


def test_nodata_border_matches_mask_exactly(scene512):
    _, x, y = scene512
    nodata = (x == 0).all(axis=0)
    assert 0.03 <= nodata.mean() <= 0.20
    assert np.array_equal(nodata, y == MASK_NODATA)
    assert not (x == 0)[:, ~nodata].any()  # a valid pixel never holds the nodata value


def test_same_seed_same_file_other_seed_other_pixels(tmp_path):
    a = write_scene(tmp_path / "a.tif", 200, 300, seed=7).path
    b = write_scene(tmp_path / "b.tif", 200, 300, seed=7).path
    c = write_scene(tmp_path / "c.tif", 200, 300, seed=8).path
    assert a.read_bytes() == b.read_bytes()
    assert not np.array_equal(_read(a), _read(c))


def test_pixels_do_not_depend_on_block_size(tmp_path):
    """Row bands of 256 and 512 rows (and a ragged last band) must give identical pixels."""
    kw = dict(seed=5, bands=3)
    s256 = write_scene(tmp_path / "a.tif", 700, 650, block=256, mask_path=tmp_path / "am.tif", **kw)
    s512 = write_scene(tmp_path / "b.tif", 700, 650, block=512, mask_path=tmp_path / "bm.tif", **kw)
    assert np.array_equal(_read(s256.path), _read(s512.path))
    assert np.array_equal(_read(s256.mask_path), _read(s512.mask_path))


_LAYOUT = scenes._make_layout(200, 150, 4, 11)
_FULL = scenes._render(_LAYOUT, 0, 200)


@settings(max_examples=25, deadline=None)
@given(st.integers(0, 199), st.integers(1, 200))
def test_any_row_range_renders_the_same_pixels(r0, n):
    """Every pixel is a function of its global position: no seam wherever a band starts or ends."""
    r1 = min(r0 + n, 200)
    for part, whole in zip(scenes._render(_LAYOUT, r0, r1), _FULL):
        assert np.array_equal(part, whole[..., r0:r1, :])


@pytest.mark.parametrize(("dtype", "nodata", "top"), [("uint8", 0, 255), ("float32", math.nan, 1.0),
                                                      ("float32", -9999.0, 1.0), ("uint16", 65535, 10000)])
def test_dtypes_and_nodata_values(tmp_path, dtype, nodata, top):
    info = write_scene(tmp_path / "s.tif", 160, 192, dtype=dtype, nodata=nodata, block=64,
                       mask_path=tmp_path / "m.tif")
    x, y = _read(info.path), _read(info.mask_path)[0]
    with rasterio.open(info.path) as src:
        assert src.dtypes[0] == dtype
        assert (math.isnan(src.nodata) if math.isnan(nodata) else src.nodata == nodata)
        assert src.tags(ns="IMAGE_STRUCTURE")["PREDICTOR"] == ("3" if dtype == "float32" else "2")
    is_nd = np.isnan(x) if math.isnan(nodata) else x == nodata
    assert np.array_equal(is_nd.all(axis=0), y == MASK_NODATA) and not is_nd[:, y != MASK_NODATA].any()
    valid = x[:, y != MASK_NODATA]
    assert valid.min() >= 0 and valid.max() <= top


def test_rotated_transform_other_crs_and_no_border(tmp_path):
    rotated = Affine.translation(500000, 4000000) @ Affine.rotation(20) @ Affine.scale(5, -5)
    one = write_scene(tmp_path / "a.tif", 96, 128, bands=1, crs="EPSG:3035", transform=rotated, nodata=None,
                      nodata_border=False, block=32, mask_path=tmp_path / "am.tif")
    with rasterio.open(one.path) as src:
        assert src.transform.almost_equals(rotated) and src.crs == CRS.from_epsg(3035)
        assert src.count == 1 and src.nodata is None
    assert (_read(one.mask_path) != MASK_NODATA).all()


@pytest.mark.parametrize("kwargs", [dict(dtype="uint8", nodata=-9999), dict(dtype="uint16", nodata=0.5),
                                    dict(block=100), dict(dtype="int64"), dict(nodata=None)])
def test_bad_scene_arguments_are_refused(tmp_path, kwargs):
    with pytest.raises(ConfigError):
        write_scene(tmp_path / "x.tif", 32, 32, **kwargs)


# ---------------------------------------------------------------- volumes


def _to_ras(img):
    """Array and affine reoriented to RAS by permutation/flips only (codes untouched)."""
    ornt = io_orientation(img.affine)
    return apply_orientation(np.asarray(img.dataobj), ornt), img.affine @ inv_ornt_aff(ornt, img.shape[:3])


def test_same_anatomy_in_every_orientation(tmp_path):
    ref_lab = ref_aff = None
    for code in ("RAS", "LPS", "PSR"):
        info = write_volume(tmp_path / f"{code}.nii.gz", (48, 40, 24), spacing=(1.0, 1.2, 3.0), orientation=code,
                            label_path=tmp_path / f"{code}_lab.nii.gz")
        img, lab = nib.load(info.path), nib.load(info.label_path)
        assert "".join(nib.aff2axcodes(img.affine)) == code
        labels, aff = _to_ras(lab)
        if ref_lab is None:
            ref_lab, ref_aff = labels, aff
            assert set(np.unique(labels)) == set(range(len(LABEL_NAMES)))
        assert np.array_equal(labels, ref_lab), code
        np.testing.assert_allclose(aff, ref_aff, atol=1e-6)
    # Liver on the patient's right (+x in RAS), spine posterior (-y): world terms, not voxel order.
    ijk = np.argwhere(ref_lab == 1).mean(axis=0)
    assert (ref_aff[:3, :3] @ ijk + ref_aff[:3, 3])[0] > 0
    ijk = np.argwhere(ref_lab == 3).mean(axis=0)
    assert (ref_aff[:3, :3] @ ijk + ref_aff[:3, 3])[1] < 0


def test_int16_slope_inter_recovers_hu_and_label_header_matches(tmp_path):
    info = write_volume(tmp_path / "ct.nii", (40, 40, 20), orientation="LPS", slope=0.5, inter=-1024.0,
                        label_path=tmp_path / "lab.nii.gz", qform_code=2, sform_code=4)
    img, lab = nib.load(info.path), nib.load(info.label_path)
    assert img.get_data_dtype() == np.int16 and (img.dataobj.slope, img.dataobj.inter) == (0.5, -1024.0)
    raw = img.dataobj.get_unscaled()
    hu = img.get_fdata()
    np.testing.assert_array_equal(hu, raw * 0.5 - 1024.0)
    labels = np.asarray(lab.dataobj)
    assert hu.min() == -1000.0  # air
    for k in (1, 2, 3):
        assert abs(hu[labels == k].mean() - LABEL_HU[k]) < 5, LABEL_NAMES[k]
    assert lab.get_data_dtype() == np.uint8 and (lab.dataobj.slope, lab.dataobj.inter) == (1.0, 0.0)
    for field in ("qform_code", "sform_code", "pixdim", "quatern_b", "quatern_c", "quatern_d", "srow_x", "srow_z"):
        np.testing.assert_array_equal(lab.header[field], img.header[field], err_msg=field)
    assert (int(lab.header["qform_code"]), int(lab.header["sform_code"])) == (2, 4)
    np.testing.assert_array_equal(lab.affine, img.affine)
    assert info.shape == img.shape and info.spacing == pytest.approx((0.8, 0.8, 2.5))


def test_oblique_affine_float32_and_4d(tmp_path):
    c, s = math.cos(0.3), math.sin(0.3)
    affine = np.array([[0.9 * c, -0.9 * s, 0, -20], [0.9 * s, 0.9 * c, 0, -15], [0, 0, 2.0, -30], [0, 0, 0, 1]])
    info = write_volume(tmp_path / "ob.nii.gz", (32, 32, 16), affine=affine, dtype="float32", extra_dims=(3,),
                        label_path=tmp_path / "ob_lab.nii.gz")
    img, lab = nib.load(info.path), nib.load(info.label_path)
    assert img.shape == (32, 32, 16, 3) and lab.shape == (32, 32, 16)
    assert img.get_data_dtype() == np.float32
    np.testing.assert_allclose(img.affine, affine, atol=1e-5)
    np.testing.assert_allclose(lab.affine, affine, atol=1e-5)
    data, labels = img.get_fdata(), np.asarray(lab.dataobj)
    # Contrast phases: kidneys enhance from phase 0 to phase 2.
    assert data[..., 2][labels == 2].mean() > data[..., 0][labels == 2].mean() + 60
    single = write_volume(tmp_path / "one.nii", (16, 16, 8), extra_dims=(1,))
    assert nib.load(single.path).shape == (16, 16, 8, 1)


def test_bad_volume_arguments_are_refused(tmp_path):
    with pytest.raises(ConfigError, match="orientation"):
        write_volume(tmp_path / "x.nii", (8, 8, 8), orientation="RRS")
    with pytest.raises(ConfigError):
        write_volume(tmp_path / "x.nii", (8, 8, 8), dtype="uint8")


# ---------------------------------------------------------------- CLI


def test_cli_writes_scene_and_volume(tmp_path, capsys):
    assert main(["scene", str(tmp_path / "s.tif"), "--size", "64", "--width", "96", "--bands", "3",
                 "--mask", str(tmp_path / "m.tif")]) == 0
    line = capsys.readouterr().out.strip()
    assert "s.tif" in line and "64 x 96 x 3" in line and "\n" not in line
    assert _read(tmp_path / "m.tif").shape == (1, 64, 96)
    assert main(["volume", str(tmp_path / "v.nii.gz"), "--shape", "16", "16", "8", "--orientation", "LPS",
                 "--labels", str(tmp_path / "l.nii.gz")]) == 0
    assert "LPS" in capsys.readouterr().out
    assert nib.load(tmp_path / "l.nii.gz").shape == (16, 16, 8)
