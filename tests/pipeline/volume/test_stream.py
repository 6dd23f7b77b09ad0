"""Volumes decoded while they are segmented (``pipeline.readers.nifti.decode``).

A streamed volume must end bit for bit equal to the whole-file read, every file that
cannot stream must say so (None) before any thread starts, and bad data must surface as
the same one-line InputError, with nothing written.
"""

from __future__ import annotations

import gzip

import numpy as np
import pytest

from pipeline.errors import InputError, SegpipeWarning
from pipeline.options import RunOptions
from pipeline.readers.nifti import ReadAhead, read_volume
from pipeline.readers.nifti import decode as stream
from pipeline.readers.nifti.decode import open_streamed
from pipeline.run.nifti import segment_volume

from .conftest import _perm, affine_from
from .test_run import CPU, THRESHOLD, handle, labels_of, make

SHAPE = (40, 48, 12)


@pytest.fixture(scope="module")
def data() -> np.ndarray:
    return np.random.default_rng(5).integers(-200, 800, size=SHAPE, dtype=np.int16)


@pytest.fixture(params=[None, 1], ids=["default-chunks", "one-plane-chunks"])
def chunk(request, monkeypatch):
    if request.param:  # a chunk of one file plane: the engine really runs behind the decoder
        monkeypatch.setattr(stream, "CHUNK_BYTES", 1)


def _same(streamed, whole) -> None:
    streamed.arrival.finish()
    np.testing.assert_array_equal(streamed.data, whole.data)
    assert streamed.data.dtype == np.float32
    assert np.moveaxis(streamed.data, streamed.slice_axis, 0).flags.c_contiguous  # slice-major, as the whole read's
    for name in ("n_invalid", "zooms", "source_shape", "source_dtype", "scaling", "slice_axis", "series_note",
                 "orientation"):
        assert getattr(streamed, name) == getattr(whole, name), name
    assert streamed.valid is None and whole.valid is None
    np.testing.assert_array_equal(streamed.affine, whole.affine)
    assert streamed.header.binaryblock == whole.header.binaryblock


@pytest.mark.parametrize("geometry", ["ras", "lps", "psr", "oblique", "sheared"])
@pytest.mark.parametrize("name", ["ct.nii.gz", "ct.nii"])
def test_streamed_volume_equals_the_whole_file_read(tmp_path, data, geometry, name, chunk):
    path = make(tmp_path, data, geometry, name=name)
    vol = open_streamed(path)
    assert vol is not None, "the file's slowest axis is its through-plane axis, unflipped: it streams"
    _same(vol, read_volume(path))


@pytest.mark.parametrize("dtype", ["uint8", "int32", "uint16"])
def test_scaled_and_other_integer_types_stream_exactly(tmp_path, data, dtype, chunk):
    stored = (data.astype(np.int64) + 200).astype(dtype)
    path = make(tmp_path, stored, "lps", slope=0.5, inter=-1024.0)
    vol = open_streamed(path)
    assert vol is not None and vol.scaling == (0.5, -1024.0)
    _same(vol, read_volume(path))


def test_a_trailing_singleton_dimension_streams_and_is_noted(tmp_path, data):
    path = make(tmp_path, data[..., None], "ras")
    vol = open_streamed(path)
    assert vol is not None and "squeezed" in vol.series_note
    _same(vol, read_volume(path))


def test_files_that_cannot_stream_are_left_to_the_whole_file_reader(tmp_path, data):
    flipped = make(tmp_path, data, affine_from(_perm([(0, 1), (1, 1), (2, -1)])), name="rai.nii.gz")
    assert open_streamed(flipped) is None  # slices would arrive last-first
    assert open_streamed(make(tmp_path, data, "ras", name="in_plane.nii.gz"), slice_axis=0) is None
    assert open_streamed(make(tmp_path, data.astype(np.float32), "ras", name="f.nii.gz")) is None  # NaN possible
    series = make(tmp_path, np.stack([data, data], axis=-1), "ras", name="series.nii.gz")
    assert open_streamed(series) is None  # series policies are the whole-file reader's
    assert open_streamed(make(tmp_path, data, "ras", name="v.nii.gz"), volume=1) is None
    huge = make(tmp_path, data.astype(np.int32), "ras", name="huge.nii.gz", slope=1e30)
    assert open_streamed(huge) is None  # int32 x 1e30 overflows float32: Inf possible
    not_nifti = tmp_path / "text.nii.gz"
    not_nifti.write_bytes(gzip.compress(b"hello"))
    assert open_streamed(not_nifti) is None
    assert open_streamed(tmp_path / "missing.nii.gz") is None


def _truncated(tmp_path, data, keep: float):
    path = make(tmp_path, data, "ras", name="cut.nii.gz")
    raw = path.read_bytes()
    path.write_bytes(raw[: int(len(raw) * keep)])
    return path


def test_truncated_gzip_is_the_same_one_line_error(tmp_path, data, chunk):
    path = _truncated(tmp_path, data, 0.6)
    with pytest.raises(InputError) as whole:
        read_volume(path)
    vol = open_streamed(path)  # the header reads: the data error comes from the decoder
    assert vol is not None
    with pytest.raises(InputError) as streamed:
        vol.arrival.finish()
    assert str(streamed.value) == str(whole.value)
    assert "truncated or corrupt gzip data" in str(streamed.value) and str(path) in str(streamed.value)
    with pytest.raises(InputError):
        vol.arrival.wait(SHAPE[2])


@pytest.mark.parametrize("where", [-8, -4])  # the gzip trailer's CRC-32, then its length
def test_a_bad_trailer_is_caught(tmp_path, data, chunk, where):
    path = make(tmp_path, data, "ras", name="crc.nii.gz")
    raw = bytearray(path.read_bytes())
    raw[where] ^= 0xFF  # every voxel decodes; only the trailer tells
    path.write_bytes(bytes(raw))
    with pytest.raises(InputError) as whole:
        read_volume(path)
    vol = open_streamed(path)
    with pytest.raises(InputError, match="truncated or corrupt gzip data") as streamed:
        vol.arrival.finish()
    assert str(path) in str(streamed.value) and "\n" not in str(streamed.value)
    assert "truncated or corrupt gzip data" in str(whole.value)


def test_concatenated_gzip_members_are_one_stream(tmp_path, data, chunk):
    path = make(tmp_path, data, "ras", name="members.nii.gz")
    raw = gzip.decompress(path.read_bytes())
    cut = len(raw) // 3
    path.write_bytes(gzip.compress(raw[:cut]) + gzip.compress(raw[cut:]) + bytes(1000))  # `cat a.gz b.gz`,
    _same(open_streamed(path), read_volume(path))  # then zero padding (tapes, some copiers): gzip accepts both


def test_data_shorter_than_the_header_says(tmp_path, data):
    path = make(tmp_path, data, "ras", name="short.nii.gz")
    raw = gzip.decompress(path.read_bytes())
    path.write_bytes(gzip.compress(raw[: len(raw) - 3 * 40 * 48 * 2]))  # a complete gzip stream, 3 planes short
    vol = open_streamed(path)
    with pytest.raises(InputError, match="disagree with the data size"):
        vol.arrival.finish()


def test_segment_volume_streams_and_round_trips(tmp_path, data, chunk):
    path = make(tmp_path, data, "lps")
    res = segment_volume(path, handle(3), tmp_path / "out", RunOptions(**CPU))
    expected = (data > THRESHOLD).astype(np.uint8)
    np.testing.assert_array_equal(labels_of(res.outputs["labels"]), expected)
    assert res.record["timings"]["decode_s"] > 0  # the streamed path ran


def test_segment_volume_on_bad_data_fails_and_writes_nothing(tmp_path, data, chunk):
    path = _truncated(tmp_path, data, 0.8)
    with pytest.raises(InputError, match="truncated or corrupt gzip data"):
        segment_volume(path, handle(1), tmp_path / "out", RunOptions(**CPU))
    assert not (tmp_path / "out" / "cut").exists()
    assert not list((tmp_path / "out" / ".segpipe" / "staging").iterdir())


def test_cancel_releases_waiters(tmp_path, data, monkeypatch):
    monkeypatch.setattr(stream, "CHUNK_BYTES", 1)
    path = make(tmp_path, data, "ras", name="c.nii.gz")
    vol = open_streamed(path)
    vol.arrival.cancel()
    try:
        vol.arrival.wait(SHAPE[2])  # either every slice made it before the cancel, or an error: never a hang
    except RuntimeError as exc:
        assert "cancelled" in str(exc)
    else:
        assert vol.arrival.ready == SHAPE[2]


def test_big_endian_and_nifti2_files_stream_exactly(tmp_path, data):
    import nibabel as nib

    img = nib.Nifti1Image(data, affine_from(np.eye(3)), header=nib.Nifti1Header(endianness=">"))
    img.header.set_data_dtype(np.int16)
    img.header.set_slope_inter(1.0, 0.0)
    be = tmp_path / "be.nii.gz"
    nib.save(img, str(be))
    assert nib.load(str(be)).header.endianness == ">"
    vol = open_streamed(be)
    assert vol is not None and vol.source_dtype == "int16"
    _same(vol, read_volume(be))
    n2 = make(tmp_path, data, "oblique", name="n2.nii.gz", nifti2=True)
    vol = open_streamed(n2)
    assert vol is not None
    _same(vol, read_volume(n2))


# -- read-ahead of a batch's next volume ------------------------------------------------------


def test_segment_volume_takes_the_volume_read_ahead_for_it(tmp_path, data, monkeypatch):
    path = make(tmp_path, data, "lps")
    ahead = ReadAhead()
    assert ahead.start(path)
    opened = []
    monkeypatch.setattr("pipeline.run.nifti.open_streamed", lambda *a, **k: opened.append(a) or None)
    res = segment_volume(path, handle(1), tmp_path / "out", RunOptions(**CPU), read_ahead=ahead)
    assert opened == []  # the read-ahead was used, the file not opened again
    np.testing.assert_array_equal(labels_of(res.outputs["labels"]), (data > THRESHOLD).astype(np.uint8))
    assert ahead.take(path, None) is None  # taken once


def test_a_read_ahead_is_not_used_for_a_changed_file_or_another_slice_axis(tmp_path, data):
    path = make(tmp_path, data, "ras")
    ahead = ReadAhead()
    assert ahead.start(path)
    assert ahead.take(path, 1) is None  # another slice axis: not this volume
    assert ahead.start(path)
    ahead._slot.volume.arrival.finish()
    make(tmp_path, data[::-1].copy(), "ras")  # rewritten in place: a new mtime
    import os

    st = path.stat()
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    assert ahead.take(path, None) is None  # decoded from the old file: not used


def test_a_new_read_ahead_stops_the_unused_one(tmp_path, data, monkeypatch):
    monkeypatch.setattr(stream, "CHUNK_BYTES", 1)
    ahead = ReadAhead()
    assert ahead.start(make(tmp_path, data, "ras", name="a.nii.gz"))
    first = ahead._slot.volume
    assert ahead.start(make(tmp_path, data, "ras", name="b.nii.gz"))
    try:
        first.arrival.wait(SHAPE[2])
    except RuntimeError as exc:
        assert "cancelled" in str(exc)  # stopped; had it finished first, there is nothing to stop
    assert not ahead.start(make(tmp_path, data.astype(np.float32), "ras", name="f.nii.gz"))  # cannot stream
    assert ahead._slot.volume is not first  # b's read-ahead stays in the slot
    ahead.close()


def test_warnings_of_a_read_ahead_reach_the_record(tmp_path, data):
    path = make(tmp_path, data, "ras", qform_code=0, sform_code=0)  # "orientation is unknown"
    ahead = ReadAhead()
    assert ahead.start(path)
    with pytest.warns(SegpipeWarning, match="orientation is unknown"):  # given again, once, by the run
        res = segment_volume(path, handle(1), tmp_path / "out", RunOptions(**CPU), read_ahead=ahead)
    assert [w for w in res.record["warnings"] if "orientation is unknown" in w] != []
