"""End-to-end scene runs with stand-in models: exactness, geometry, COG, nodata, bad input."""

import json
import os
import warnings

import numpy as np
import pytest
import rasterio
from affine import Affine

from pipeline.tiling.blend import BLEND_WINDOWS
from pipeline.errors import ConfigError, InputError, OutputError, SegpipeWarning
from pipeline.sinks.geotiff.cog import cog_problems
from pipeline.run.geotiff import segment_scene
from pipeline.options import RunOptions

from .conftest import identity_handle

CPU = dict(device="cpu", batch_size=3, workers=2)


def _scores(h, w, k=3, seed=0):
    return np.random.default_rng(seed).random((k, h, w)).astype(np.float32)


def _leftovers(folder):
    return [p.name for p in folder.rglob("*") if ".partial" in p.name]


@pytest.mark.parametrize("blend", sorted(BLEND_WINDOWS))
@pytest.mark.parametrize("shape", [(200, 170), (64, 64), (37, 300), (23, 11)])
def test_identity_round_trip_is_exact(make_tif, tmp_path, blend, shape):
    data = _scores(*shape)
    path = make_tif(data)
    res = segment_scene(path, identity_handle(), tmp_path / "out", RunOptions(blend=blend, **CPU))
    with rasterio.open(res.outputs["mask"]) as ds:
        mask = ds.read(1)
    np.testing.assert_array_equal(mask, data.argmax(0).astype(np.uint8))
    assert not _leftovers(tmp_path)


def test_streaming_many_grid_rows_with_tta_and_uint16(make_tif, tmp_path):
    # Distinct residues mod 3 per band: no ties, so the argmax and the confidence are exact.
    rng = np.random.default_rng(1)
    data = (rng.integers(0, 20000, (3, 333, 150)) * 3 + np.arange(3)[:, None, None]).astype(np.uint16)
    path = make_tif(data)
    res = segment_scene(path, identity_handle(tile=32, overlap=8), tmp_path / "out",
                        RunOptions(tta=True, confidence=True, probabilities=True, **CPU))
    with rasterio.open(res.outputs["mask"]) as ds:
        np.testing.assert_array_equal(ds.read(1), data.argmax(0))
    with rasterio.open(res.outputs["confidence"]) as ds:
        conf = ds.read(1)
        assert ds.scales == (pytest.approx(1 / 254),)
    # x*10 of values in the tens of thousands: softmax is one-hot, confidence is exactly 254.
    assert (conf == 254).all()
    with rasterio.open(res.outputs["probabilities"]) as ds:
        probs = ds.read()
    assert probs.shape == (3, 333, 150)
    np.testing.assert_array_equal(probs.argmax(0), data.argmax(0))


@pytest.mark.parametrize("transform", [
    Affine(10, 0, 500000, 0, -10, 6000000),
    Affine(9.5, 2.5, 500000, 1.5, -12.0, 6000000),  # rotated, non-square pixels
])
def test_output_geometry_equals_input_and_is_a_valid_cog(make_tif, tmp_path, transform):
    data = _scores(150, 220)
    path = make_tif(data, transform=transform)
    res = segment_scene(path, identity_handle(), tmp_path / "out", RunOptions(confidence=True, **CPU))
    with rasterio.open(path) as src:
        for name, out in res.outputs.items():
            with rasterio.open(out) as ds:
                assert ds.crs == src.crs and ds.crs.to_wkt() == src.crs.to_wkt()
                assert ds.transform == src.transform
                assert (ds.width, ds.height) == (src.width, src.height)
                assert ds.profile["tiled"] and ds.compression is not None
            assert cog_problems(out) == [], name
    with rasterio.open(res.outputs["mask"]) as ds:
        assert ds.nodata == 255
        assert ds.colormap(1)[1][:3] == (31, 119, 180)
        tags = ds.tags()
        assert tags["CLASS_NAMES"] == "c0,c1,c2"
        assert tags["SEGPIPE_MODEL_SHA256"] == "0" * 64
        assert tags["SEGPIPE_BLEND"] == "gaussian"


def test_record_lists_outputs_and_is_written_last(make_tif, tmp_path):
    path = make_tif(_scores(100, 100))
    res = segment_scene(path, identity_handle(), tmp_path / "out", RunOptions(**CPU))
    rec = json.loads(res.record_path.read_text())
    assert rec["status"] == "complete"
    assert rec["outputs"] == {"mask": "scene_mask.tif"}
    import hashlib
    assert rec["input"]["sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()
    assert rec["model"]["sha256"] == "0" * 64
    assert rec["settings"]["tile"] == 64 and rec["settings"]["overlap"] == 16
    mask_mtime = os.stat(res.outputs["mask"]).st_mtime_ns
    assert os.stat(res.record_path).st_mtime_ns >= mask_mtime


def test_nodata_stays_nodata_and_is_not_predicted_on(make_tif, tmp_path):
    data = _scores(120, 90)
    data[:, :30, :] = -9999
    data[:, :, -7:] = -9999
    data[0, 60, 40] = -9999  # one band's nodata invalidates the pixel (the any-band rule)
    path = make_tif(data, nodata=-9999)
    res = segment_scene(path, identity_handle(), tmp_path / "out",
                        RunOptions(confidence=True, nodata_rule="any-band", **CPU))
    with rasterio.open(res.outputs["mask"]) as ds:
        mask = ds.read(1)
    invalid = (data == -9999).any(0)
    assert (mask[invalid] == 255).all()
    np.testing.assert_array_equal(mask[~invalid], data.argmax(0)[~invalid])
    with rasterio.open(res.outputs["confidence"]) as ds:
        assert (ds.read(1)[invalid] == 255).all()


def test_by_default_a_pixel_is_nodata_where_gdal_s_dataset_mask_says(make_tif, tmp_path):
    """GDAL's rule: nodata only where every band holds the nodata value; one band's is a value."""
    data = _scores(120, 90)
    data[:, :30, :] = -9999
    data[0, 60:70, 40:50] = -9999  # band 1 only: valid for GDAL (rasterio's RGB.byte.tif has such pixels)
    path = make_tif(data, nodata=-9999)
    res = segment_scene(path, identity_handle(), tmp_path / "out", RunOptions(**CPU))
    with rasterio.open(path) as ds:
        gdal_valid = ds.dataset_mask() > 0
    with rasterio.open(res.outputs["mask"]) as ds:
        mask = ds.read(1)
    np.testing.assert_array_equal(mask != 255, gdal_valid)
    assert gdal_valid[60:70, 40:50].all() and not gdal_valid[:30].any()
    np.testing.assert_array_equal(mask[gdal_valid], data.argmax(0)[gdal_valid])  # predicted on its values
    assert res.record["settings"]["nodata_rule"] == "all-bands"


def test_nan_pixels_of_overlapping_strips_are_counted_once(make_tif, tmp_path):
    data = _scores(300, 100)
    data[1, 40:260, 10:20] = np.nan  # 2200 pixels over every strip overlap of a 64/16 grid
    with pytest.warns(SegpipeWarning, match=r"2200 pixel\(s\) with NaN/Inf"):
        segment_scene(make_tif(data), identity_handle(), tmp_path / "out", RunOptions(**CPU))


def test_internal_mask_and_alpha_band_are_validity(make_tif, tmp_path):
    data = _scores(80, 80)
    path = make_tif(data)
    with rasterio.Env(GDAL_TIFF_INTERNAL_MASK=True):
        with rasterio.open(path, "r+") as ds:
            m = np.full((80, 80), 255, np.uint8)
            m[:20] = 0
            ds.write_mask(m)
    res = segment_scene(path, identity_handle(), tmp_path / "out", RunOptions(**CPU))
    with rasterio.open(res.outputs["mask"]) as ds:
        mask = ds.read(1)
    assert (mask[:20] == 255).all() and (mask[20:] != 255).all()

    rgba = np.concatenate([(data * 200).astype(np.uint8), np.full((1, 80, 80), 255, np.uint8)])
    rgba[3, :, :10] = 0
    path2 = make_tif(rgba, name="rgba.tif", photometric="RGB", alpha="YES")
    res = segment_scene(path2, identity_handle(), tmp_path / "out2", RunOptions(**CPU))
    with rasterio.open(res.outputs["mask"]) as ds:
        mask = ds.read(1)
    assert (mask[:, :10] == 255).all() and (mask[:, 10:] != 255).all()


def test_nan_and_inf_are_invalid_with_a_warning(make_tif, tmp_path):
    data = _scores(64, 64)
    data[1, 5, 5] = np.nan
    data[2, 6, 6] = np.inf
    path = make_tif(data)
    with pytest.warns(SegpipeWarning, match="NaN/Inf"):
        res = segment_scene(path, identity_handle(), tmp_path / "out", RunOptions(**CPU))
    with rasterio.open(res.outputs["mask"]) as ds:
        mask = ds.read(1)
    assert mask[5, 5] == 255 and mask[6, 6] == 255
    assert (mask != 255).sum() == 64 * 64 - 2
    assert any("NaN" in w for w in res.record["warnings"])


def test_all_nodata_scene_gives_all_nodata_mask_and_warning(make_tif, tmp_path):
    data = np.zeros((3, 70, 70), np.uint16)
    path = make_tif(data, nodata=0)
    with pytest.warns(SegpipeWarning, match="no valid pixel"):
        res = segment_scene(path, identity_handle(), tmp_path / "out", RunOptions(**CPU))
    with rasterio.open(res.outputs["mask"]) as ds:
        assert (ds.read(1) == 255).all()
    assert res.record["facts"]["tiles_skipped"] == res.record["facts"]["tiles_total"]


def test_no_crs_is_allowed_with_a_warning(make_tif, tmp_path):
    path = make_tif(_scores(50, 50), crs=None)
    with pytest.warns(SegpipeWarning, match="no CRS"):
        res = segment_scene(path, identity_handle(), tmp_path / "out", RunOptions(**CPU))
    with rasterio.open(res.outputs["mask"]) as ds:
        assert ds.crs is None
        assert ds.transform == Affine(10, 0, 500000, 0, -10, 6000000)


def test_not_a_raster_is_a_clear_error(tmp_path):
    bad = tmp_path / "notes.tif"
    bad.write_text("hello, I am not a GeoTIFF")
    with pytest.raises(InputError, match="notes.tif.*not a readable raster"):
        segment_scene(bad, identity_handle(), tmp_path / "out", RunOptions(**CPU))
    assert not (tmp_path / "out" / "notes").exists()


def test_missing_input_is_a_clear_error(tmp_path):
    with pytest.raises(InputError, match="nope.tif.*not found"):
        segment_scene(tmp_path / "nope.tif", identity_handle(), tmp_path / "out", RunOptions(**CPU))


def test_truncated_tiff_whose_header_reads_leaves_nothing_behind(make_tif, tmp_path):
    data = (np.random.default_rng(0).random((3, 256, 256)) * 60000).astype(np.uint16)
    path = make_tif(data, compress="deflate")
    size = path.stat().st_size
    with open(path, "r+b") as f:
        f.truncate(size // 2)
    with rasterio.open(path) as ds:  # the header still reads
        assert ds.width == 256
    out = tmp_path / "out"
    with pytest.raises(InputError, match=r"scene.tif.*cannot read rows"):
        segment_scene(path, identity_handle(), out, RunOptions(**CPU))
    assert not (out / "scene").exists()  # no folder that could look started, let alone finished
    leftovers = sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file())
    assert leftovers == [".segpipe/locks/scene.lock"]  # no staging folder, no partial files, no mask, no record


def test_band_count_mismatch_is_a_clear_error(make_tif, tmp_path):
    path = make_tif(_scores(50, 50, k=2))
    with pytest.raises(InputError, match="scene.tif: has 2 band.*bands \\[1, 2, 3\\]"):
        segment_scene(path, identity_handle(bands=3), tmp_path / "out", RunOptions(**CPU))


def test_unwritable_output_folder_is_a_clear_error(make_tif, tmp_path):
    path = make_tif(_scores(50, 50))
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o500)
    try:
        if os.access(ro, os.W_OK):
            pytest.skip("running as a user that ignores permissions (root)")
        with pytest.raises(OutputError, match="not writable"):
            segment_scene(path, identity_handle(), ro, RunOptions(**CPU))
    finally:
        ro.chmod(0o700)


def test_output_root_that_is_a_file_is_a_clear_error(make_tif, tmp_path):
    path = make_tif(_scores(50, 50))
    blocker = tmp_path / "out"
    blocker.write_text("a file where the output folder should go")
    with pytest.raises(OutputError, match="out/scene: output folder is not writable"):
        segment_scene(path, identity_handle(), blocker, RunOptions(**CPU))


def test_bad_settings_are_config_errors():
    with pytest.raises(ConfigError, match="multiple of 32"):
        RunOptions(tile=100)
    with pytest.raises(ConfigError, match="blend"):
        RunOptions(blend="median")


def test_a_failed_rerun_leaves_the_last_good_outputs_exactly_as_they_were(make_tif, tmp_path):
    path = make_tif(_scores(60, 60))
    out = tmp_path / "out"
    res = segment_scene(path, identity_handle(), out, RunOptions(confidence=True, **CPU))
    before = {p.name: p.read_bytes() for p in res.scene_dir.iterdir()}
    assert {"record.json", "qa.json", "qa.html", "scene_mask.tif", "scene_confidence.tif"} <= set(before)
    with open(path, "r+b") as f:  # corrupt the input, run again
        f.truncate(path.stat().st_size // 3)
    with pytest.raises(InputError), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        segment_scene(path, identity_handle(), out, RunOptions(**CPU))
    after = {p.name: p.read_bytes() for p in res.scene_dir.iterdir()}
    assert after == before  # record, QA report and outputs of the good run, byte for byte
    assert not list((out / ".segpipe" / "staging").iterdir())  # the failed run's staging folder is gone


def test_progress_reports_tiles_and_rows_until_done(make_tif, tmp_path):
    seen = []
    segment_scene(make_tif(_scores(150, 100)), identity_handle(), tmp_path / "out", RunOptions(**CPU),
                  progress=seen.append)
    assert seen, "no progress reported"
    last = seen[-1]
    assert (last.tiles_done, last.rows_done, last.rows_total, last.width) == (last.tiles_total, 150, 150, 100)
    assert all(a.tiles_done <= b.tiles_done and a.rows_done <= b.rows_done for a, b in zip(seen, seen[1:]))
    assert last.mpix_per_s > 0
