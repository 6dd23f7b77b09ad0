"""Reading volumes: scaling, orientation, 4D policies, NaN handling, and every bad input."""

from __future__ import annotations

import gzip
import shutil
import struct

import nibabel as nib
import numpy as np
import pytest

from pipeline.errors import ConfigError, InputError, SegpipeWarning
from pipeline.readers.nifti import iter_volumes, open_streamed, read_volume, scaling_of

from .conftest import SHAPE, ZOOMS, write_nifti


def on_disk(path, index=None) -> np.ndarray:
    """What nibabel itself reads (scaling applied), in the file's voxel order."""
    data = nib.load(str(path)).get_fdata()
    return data if index is None else data[..., index]


# ----------------------------------------------------------------------------- good inputs


def test_lps_int16_with_slope_and_inter(make_nifti, int16_volume):
    path = make_nifti("ct.nii.gz", int16_volume, "lps", slope=0.5, inter=-1024.0)
    vol = read_volume(path)
    assert vol.scaling == (0.5, -1024.0)
    assert vol.source_dtype == "int16"
    assert vol.data.dtype == np.float32
    assert vol.slice_axis == 2  # zooms (0.7, 0.8, 2.5): through-plane is S
    assert np.moveaxis(vol.data, 2, 0).flags.c_contiguous  # slice-major memory
    assert vol.orientation.source_codes == ("L", "P", "S")
    expected = on_disk(path)[::-1, ::-1, :]  # LPS -> RAS flips axes 0 and 1
    np.testing.assert_array_equal(vol.data, expected.astype(np.float32))
    assert vol.data[0, 0, 0] == int16_volume[-1, -1, 0] * 0.5 - 1024.0
    assert vol.zooms == pytest.approx(ZOOMS)
    assert vol.valid is None and vol.n_invalid == 0
    assert vol.series_note == "" and vol.volume_index is None


@pytest.mark.parametrize("slope", [0.0, np.nan])
def test_slope_zero_or_nan_means_no_scaling(slope):
    hdr = nib.Nifti1Header()
    hdr["scl_slope"], hdr["scl_inter"] = slope, 5.0
    assert scaling_of(hdr) == (1.0, 0.0)
    # nibabel agrees: no scaling at all, the intercept is ignored too
    assert hdr.get_slope_inter() == (None, None)


def test_slope_zero_on_disk_reads_raw_values(make_nifti, int16_volume):
    path = make_nifti("raw.nii", int16_volume, "ras")
    raw = bytearray(path.read_bytes())
    # NIfTI-1: scl_slope and scl_inter are float32 at bytes 112..119
    assert np.frombuffer(bytes(raw[112:120]), dtype="<f4").tolist() == [1.0, 0.0]
    raw[112:120] = np.array([0.0, 7.0], dtype="<f4").tobytes()  # scl_slope = 0, scl_inter = 7
    path.write_bytes(bytes(raw))
    vol = read_volume(path)
    assert vol.scaling == (1.0, 0.0)
    np.testing.assert_array_equal(vol.data, int16_volume.astype(np.float32))


def test_psr_permutes_axes_and_zooms(make_nifti, int16_volume):
    vol = read_volume(make_nifti("psr.nii.gz", int16_volume, "psr"))
    assert vol.shape == (SHAPE[2], SHAPE[0], SHAPE[1])
    assert vol.zooms == pytest.approx((ZOOMS[2], ZOOMS[0], ZOOMS[1]))
    # source axis 0 is P (flip), axis 1 is S, axis 2 is R
    np.testing.assert_array_equal(vol.data, np.transpose(int16_volume[::-1], (2, 0, 1)).astype(np.float32))


@pytest.mark.parametrize("axis", [0, 1, 2])
def test_slice_axis_changes_layout_not_values(make_nifti, int16_volume, axis):
    path = make_nifti("lay.nii.gz", int16_volume, "oblique", slope=0.25, inter=3.0)
    ref = read_volume(path)
    vol = read_volume(path, slice_axis=axis)
    assert vol.slice_axis == axis and np.moveaxis(vol.data, axis, 0).flags.c_contiguous
    np.testing.assert_array_equal(vol.data, ref.data)


def test_header_is_kept_as_stored(make_nifti, int16_volume):
    path = make_nifti("q1s2.nii.gz", int16_volume, "q1_s2_differ", slope=2.0, inter=1.0)
    vol = read_volume(path)
    stored = nib.load(str(path)).header
    assert int(vol.header["qform_code"]) == 1 and int(vol.header["sform_code"]) == 2
    np.testing.assert_allclose(vol.header.get_qform(), stored.get_qform())
    np.testing.assert_allclose(vol.header.get_sform(), stored.get_sform())
    np.testing.assert_allclose(vol.affine, stored.get_sform())  # best affine: the sform
    assert float(vol.header["scl_slope"]) == 2.0  # as on disk, unlike nib.load's header


def test_any_dtype_reads_as_float32(make_nifti):
    for dtype in (np.uint8, np.int32, np.uint16, np.float64, np.int8):
        data = (np.arange(np.prod(SHAPE)) % 100).astype(dtype).reshape(SHAPE)
        vol = read_volume(make_nifti(f"d_{np.dtype(dtype).name}.nii", data, "ras"))
        assert vol.data.dtype == np.float32
        np.testing.assert_array_equal(vol.data, data.astype(np.float32))


def test_nifti2_is_read(make_nifti, int16_volume):
    vol = read_volume(make_nifti("n2.nii.gz", int16_volume, "oblique", nifti2=True))
    assert isinstance(vol.header, nib.Nifti2Header)
    assert vol.shape == vol.orientation.canonical_shape


def test_trailing_singleton_is_squeezed(make_nifti, int16_volume):
    path = make_nifti("s.nii.gz", int16_volume[..., None], "lps")
    vol = read_volume(path)
    assert vol.shape == SHAPE and vol.source_shape == SHAPE + (1,)
    assert "squeezed" in vol.series_note
    np.testing.assert_array_equal(vol.data, on_disk(path)[::-1, ::-1, :, 0].astype(np.float32))


def test_nan_and_inf_are_invalid_and_reported(make_nifti):
    data = np.linspace(-5, 5, np.prod(SHAPE), dtype=np.float32).reshape(SHAPE)
    data[1, 2, 3], data[4, 5, 6], data[7, 8, 9] = np.nan, np.inf, -np.inf
    path = make_nifti("nan.nii.gz", data, "ras")
    with pytest.warns(SegpipeWarning, match="3 NaN/Inf voxels"):
        vol = read_volume(path)
    assert vol.n_invalid == 3
    assert not vol.valid[1, 2, 3] and not vol.valid[4, 5, 6] and vol.valid.sum() == data.size - 3
    assert vol.data[1, 2, 3] == vol.data[4, 5, 6] == np.nanmin(np.where(np.isfinite(data), data, np.nan))
    assert np.isfinite(vol.data).all()


def test_nan_mask_follows_the_orientation(make_nifti):
    data = np.ones(SHAPE, dtype=np.float32)
    data[0, 0, 0] = np.nan
    with pytest.warns(SegpipeWarning):
        vol = read_volume(make_nifti("nan_lps.nii", data, "lps"))
    assert not vol.valid[-1, -1, 0] and vol.valid.sum() == data.size - 1


# ----------------------------------------------------------------------------- 4D series


@pytest.fixture
def series(make_nifti, int16_volume):
    data = np.stack([int16_volume, int16_volume + 1000, int16_volume - 1000], axis=-1)
    return make_nifti("series.nii.gz", data, "lps", slope=1.5, inter=0.0)


def test_series_without_policy_is_an_error(series):
    with pytest.raises(InputError) as err:
        read_volume(series)
    msg = str(err.value)
    assert "series.nii.gz" in msg and "(20, 24, 16, 3)" in msg
    assert "--volume N" in msg and "--series each" in msg and "\n" not in msg


def test_series_select(series):
    vol = read_volume(series, volume=1)
    assert vol.series_note == "4D series of 3 volumes: volume 1 selected by --volume 1"
    assert vol.volume_index == 1 and vol.source_shape == SHAPE + (3,)
    np.testing.assert_array_equal(vol.data, on_disk(series, 1)[::-1, ::-1].astype(np.float32))


def test_series_each(series):
    vols = list(iter_volumes(series, series_policy="each"))
    assert [v.volume_index for v in vols] == [0, 1, 2]
    assert vols[2].series_note == "4D series of 3 volumes: volume 2 of 3 (--series each)"
    for i, v in enumerate(vols):
        np.testing.assert_array_equal(v.data, on_disk(series, i)[::-1, ::-1].astype(np.float32))


def test_contradictory_or_incomplete_policy(series):
    with pytest.raises(ConfigError, match="contradict"):
        list(iter_volumes(series, volume=1, series_policy="each"))
    with pytest.raises(ConfigError, match="needs --volume"):
        read_volume(series, series_policy="select")
    with pytest.raises(ConfigError, match="slice-axis"):
        read_volume(series, volume=0, slice_axis=3)


def test_series_volume_out_of_range(series):
    with pytest.raises(InputError, match=r"series.nii.gz.*--volume 3 is out of range.*0\.\.2"):
        read_volume(series, volume=3)


# ----------------------------------------------------------------------------- nibabel's own files


def test_nibabel_anatomical(nibabel_data):
    path = nibabel_data / "anatomical.nii"
    vol = read_volume(path)
    img = nib.load(str(path))
    assert img.header.get_data_dtype().byteorder == ">"  # big-endian int16 on disk
    assert vol.orientation.source_codes == ("L", "A", "S")
    np.testing.assert_array_equal(vol.data, img.get_fdata()[::-1].astype(np.float32))


def test_nibabel_reoriented(nibabel_data):
    path = nibabel_data / "reoriented_anat_moved.nii"
    vol = read_volume(path)
    img = nib.load(str(path))
    np.testing.assert_array_equal(vol.orientation.to_source(vol.data), img.get_fdata().astype(np.float32))


@pytest.mark.parametrize("name", ["example4d.nii.gz", "example_nifti2.nii.gz"])
def test_nibabel_series(nibabel_data, name):
    path = nibabel_data / name
    with pytest.raises(InputError, match=name):
        read_volume(path)
    vol = read_volume(path, volume=1)
    img = nib.load(str(path))
    np.testing.assert_array_equal(vol.orientation.to_source(vol.data), img.get_fdata()[..., 1].astype(np.float32))
    assert len(list(iter_volumes(path, series_policy="each"))) == img.shape[3]


# ----------------------------------------------------------------------------- bad inputs


def _expect_input_error(path, match: str):
    with pytest.raises(InputError) as err:
        read_volume(path)
    msg = str(err.value)
    assert path.name in msg, msg
    assert match in msg, msg
    assert "\n" not in msg, msg
    return msg


def test_missing_file(tmp_path):
    _expect_input_error(tmp_path / "nope.nii.gz", "file not found")


def test_wrong_extension(tmp_path, make_nifti, int16_volume):
    src = make_nifti("ok.nii", int16_volume)
    dst = tmp_path / "ok.img"
    shutil.copy(src, dst)
    _expect_input_error(dst, "expected a NIfTI file ending in .nii or .nii.gz")


def test_truncated_gzip(tmp_path, make_nifti, int16_volume):
    good = make_nifti("good.nii.gz", int16_volume).read_bytes()
    bad = tmp_path / "trunc.nii.gz"
    bad.write_bytes(good[: len(good) // 2])
    _expect_input_error(bad, "truncated or corrupt gzip")


def test_corrupt_gzip(tmp_path, make_nifti, int16_volume):
    good = bytearray(make_nifti("good.nii.gz", int16_volume).read_bytes())
    good[len(good) // 2: len(good) // 2 + 64] = b"\x55" * 64
    bad = tmp_path / "corrupt.nii.gz"
    bad.write_bytes(bytes(good))
    # nibabel alone reads this without complaint (it stops before the gzip CRC)
    _expect_input_error(bad, "truncated or corrupt gzip")


def test_gzip_of_something_else(tmp_path):
    bad = tmp_path / "junk.nii.gz"
    bad.write_bytes(gzip.compress(b"hello " * 200))
    _expect_input_error(bad, "not a NIfTI-1/NIfTI-2 file")


def test_not_nifti(tmp_path):
    bad = tmp_path / "notes.nii"
    bad.write_text("this is a text file, not an image\n" * 20)
    _expect_input_error(bad, "not a NIfTI-1/NIfTI-2 file")


def test_gzip_named_nii(tmp_path, make_nifti, int16_volume):
    bad = tmp_path / "zipped.nii"
    bad.write_bytes(make_nifti("z.nii.gz", int16_volume).read_bytes())
    _expect_input_error(bad, "rename it to .nii.gz")


def test_empty_file(tmp_path):
    bad = tmp_path / "empty.nii.gz"
    bad.write_bytes(b"")
    _expect_input_error(bad, "an empty file")


def test_two_d_image(tmp_path):
    path = write_nifti(tmp_path / "flat.nii.gz", np.zeros((20, 24), np.int16), zooms=(1.0, 1.0),
                       qform=np.eye(4), sform=np.eye(4))
    _expect_input_error(path, "expected a 3D volume")


def test_header_dims_larger_than_data_nii(tmp_path, make_nifti, int16_volume):
    raw = make_nifti("full.nii", int16_volume).read_bytes()
    bad = tmp_path / "short.nii"
    bad.write_bytes(raw[:-500])
    _expect_input_error(bad, "header dimensions (20, 24, 16)")


def test_header_dims_larger_than_data_gz(tmp_path, make_nifti, int16_volume):
    raw = make_nifti("full.nii", int16_volume).read_bytes()
    bad = tmp_path / "short.nii.gz"
    bad.write_bytes(gzip.compress(raw[:-500]))  # a valid gzip stream holding too little data
    _expect_input_error(bad, "disagree with the data size")


def test_zero_size_dimension(tmp_path):
    path = write_nifti(tmp_path / "zero.nii.gz", np.zeros((20, 0, 16), np.int16), qform=np.eye(4))
    _expect_input_error(path, "zero-size dimension")


def _with_dims(raw: bytes, dims: tuple[int, ...]) -> bytes:
    """A NIfTI-1 file's bytes with ``dim`` (header offset 40, 8 int16) rewritten."""
    out = bytearray(raw)
    struct.pack_into("<8h", out, 40, len(dims), *dims, *([1] * (7 - len(dims))))
    return bytes(out)


@pytest.mark.parametrize("streamed", [False, True])
def test_gz_header_claiming_more_than_gzip_can_hold(tmp_path, make_nifti, int16_volume, streamed):
    """32767^3 int16 voxels (64 TiB) in a file of a few KiB: one InputError before any allocation."""
    raw = make_nifti("full.nii", int16_volume).read_bytes()
    bad = tmp_path / "huge.nii.gz"
    bad.write_bytes(gzip.compress(_with_dims(raw, (32767, 32767, 32767))))
    if streamed:
        with pytest.raises(InputError) as err:
            open_streamed(bad)
        msg = str(err.value)
    else:
        msg = _expect_input_error(bad, "need 64.0 TiB of data, more than a .nii.gz of")
    assert "(32767, 32767, 32767)" in msg and "1032:1" in msg and "\n" not in msg, msg


def test_gz_header_just_within_the_gzip_bound_reads_its_error_from_the_data(tmp_path, make_nifti, int16_volume):
    """A claim gzip could hold (only twice the real data) is not refused up front: decoding says it is short."""
    raw = make_nifti("full.nii", int16_volume).read_bytes()
    bad = tmp_path / "double.nii.gz"
    bad.write_bytes(gzip.compress(_with_dims(raw, (20, 24, 32))))
    _expect_input_error(bad, "disagree with the data size")


@pytest.mark.parametrize("name", ["neg.nii", "neg.nii.gz"])
def test_negative_dimension(tmp_path, make_nifti, int16_volume, name):
    raw = _with_dims(make_nifti("full.nii", int16_volume).read_bytes(), (20, -24, 16))
    bad = tmp_path / name
    bad.write_bytes(gzip.compress(raw) if name.endswith(".gz") else raw)
    msg = _expect_input_error(bad, "negative dimension in shape (20, -24, 16)")
    with pytest.raises(InputError, match="negative dimension"):
        open_streamed(bad)
    assert "expected every dimension >= 1" in msg


def test_five_d_vector_image(tmp_path):
    path = write_nifti(tmp_path / "vec.nii.gz", np.zeros((4, 5, 6, 2, 3), np.int16), zooms=(1, 1, 1),
                       qform=np.eye(4))
    _expect_input_error(path, "expected a 3D volume or a 4D series")


def test_complex_data(tmp_path):
    path = write_nifti(tmp_path / "cplx.nii", np.zeros(SHAPE, np.complex64), qform=np.eye(4))
    _expect_input_error(path, "not supported")


def test_volume_index_on_a_3d_file(make_nifti, int16_volume):
    path = make_nifti("three.nii.gz", int16_volume)
    with pytest.raises(InputError, match="three.nii.gz.*single 3D volume"):
        read_volume(path, volume=2)
    assert read_volume(path, volume=0).shape == SHAPE


def test_no_geometry_codes_warns(tmp_path, int16_volume):
    path = write_nifti(tmp_path / "bare.nii", int16_volume)  # no qform, no sform
    with pytest.warns(SegpipeWarning, match="orientation is unknown"):
        read_volume(path)


def test_scaling_in_chunks_matches_one_pass(make_nifti, int16_volume, monkeypatch):
    import pipeline.readers.nifti.volume as io

    path = make_nifti("ct.nii.gz", int16_volume, "lps", slope=0.5, inter=-1024.0)
    whole = read_volume(path).data
    plane = int(np.prod(whole.shape[:2]))
    monkeypatch.setattr(io, "_CHUNK_VOXELS", 3 * plane)  # chunks of 3 slices: 16 = 5 x 3 + 1
    chunked = read_volume(path).data
    np.testing.assert_array_equal(chunked, whole)
    assert np.moveaxis(chunked, 2, 0).flags.c_contiguous


def _watch_raw(monkeypatch):
    """Record a weak reference to the decoded file data that iter_volumes works from."""
    import gc
    import weakref

    import pipeline.readers.nifti.volume as io

    refs = []
    real = io._load

    def load(path):
        img, header, raw = real(path)
        refs.append(weakref.ref(raw))
        return img, header, raw

    monkeypatch.setattr(io, "_load", load)
    return lambda: (gc.collect(), refs[0]() is not None)[1]


def test_decoded_data_is_freed_while_the_last_volume_runs(make_nifti, int16_volume, monkeypatch):
    alive = _watch_raw(monkeypatch)
    volumes = iter_volumes(make_nifti("ct.nii.gz", int16_volume, "lps", slope=0.5, inter=-1024.0))
    vol = next(volumes)  # the generator stays open while the engine works on vol
    assert vol.data.shape == (20, 24, 16)
    assert not alive()  # only the float32 copy is held, not the stored int16 as well


def test_a_series_keeps_its_data_until_its_last_volume(series, monkeypatch):
    alive = _watch_raw(monkeypatch)
    volumes = iter_volumes(series, series_policy="each")
    for expected_alive in (True, True, False):
        next(volumes)
        assert alive() == expected_alive
