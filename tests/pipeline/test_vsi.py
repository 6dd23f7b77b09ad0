"""GDAL virtual paths as inputs (/vsizip/ here; /vsicurl/ in test_vsi_http.py), and DICOM refused clearly."""

from __future__ import annotations

import hashlib
import zipfile

import numpy as np
import pytest
import rasterio

from pipeline.errors import InputError
from pipeline.options import RunOptions
from pipeline.readers import input_stem
from pipeline.readers.identity import identity_changed, input_identity
from pipeline.readers.vsi import archive_of, as_input, input_name, is_network, open_options, public
from pipeline.run import segment_file
from pipeline.run.geotiff import segment_scene

from .conftest import identity_handle

CPU = dict(device="cpu", workers=2)


def test_gdal_paths_are_kept_as_given_and_named_by_their_last_component():
    p = "/vsizip//data/s.zip/dir/a.tif"
    assert as_input(p) == p  # Path() would make it /vsizip/data/s.zip/..., a path relative to the cwd
    assert input_name(p) == "a.tif" and input_stem(p) == "a"
    assert archive_of(p) == "/data/s.zip" and archive_of("/vsizip/{/data/s.zip}/a.tif") == "/data/s.zip"
    url = "/vsicurl/https://user:secret@host.org/x/b.tif?X-Amz-Signature=abc123&X-Amz-Expires=60"
    assert as_input(url) == url and input_stem(url) == "b" and is_network(url) and not is_network(p)
    assert public(url) == "/vsicurl/https://host.org/x/b.tif?X-Amz-Signature=...&X-Amz-Expires=..."
    assert "secret" not in public(url) and "abc123" not in public(url)
    assert is_network("/vsis3/bucket/k/c.tif") and is_network("/vsizip//vsicurl/http://h/s.zip/a.tif")


def test_network_defaults_yield_to_the_users_environment(monkeypatch):
    monkeypatch.delenv("GDAL_DISABLE_READDIR_ON_OPEN", raising=False)
    assert open_options("/vsis3/b/a.tif")["GDAL_DISABLE_READDIR_ON_OPEN"] == "EMPTY_DIR"
    assert open_options("/data/a.tif") == {} and open_options("/vsizip//data/s.zip/a.tif") == {}
    monkeypatch.setenv("GDAL_DISABLE_READDIR_ON_OPEN", "FALSE")
    assert "GDAL_DISABLE_READDIR_ON_OPEN" not in open_options("/vsis3/b/a.tif")
    # an archive on the network is not an allowed raster extension: the option is left out there
    assert "CPL_VSIL_CURL_ALLOWED_EXTENSIONS" not in open_options("/vsizip//vsicurl/http://h/s.zip/a.tif")


@pytest.fixture
def zipped_scene(make_tif, tmp_path):
    rng = np.random.default_rng(3)
    data = rng.random((3, 150, 170)).astype(np.float32)
    local = make_tif(data, name="a.tif")
    archive = tmp_path / "s.zip"
    with zipfile.ZipFile(archive, "w") as z:
        z.write(local, "dir/a.tif")
    return local, archive, f"/vsizip/{archive}/dir/a.tif"


def test_a_scene_inside_a_zip_runs_like_the_file_itself(zipped_scene, tmp_path):
    local, archive, vsi = zipped_scene
    assert vsi.startswith("/vsizip//")  # the archive's absolute path follows the prefix
    model = identity_handle()
    ref = segment_scene(local, model, tmp_path / "ref", RunOptions(**CPU))
    res = segment_file(vsi, model, tmp_path / "out", RunOptions(**CPU))
    assert res.scene_dir.name == "a"
    with rasterio.open(res.outputs["mask"]) as got, rasterio.open(ref.outputs["mask"]) as want:
        np.testing.assert_array_equal(got.read(1), want.read(1))
        assert got.tags()["SEGPIPE_INPUT"] == vsi
    inp = res.record["input"]
    assert inp["path"] == vsi and inp["sha256"] is None and inp["size_bytes"] is None
    assert inp["identity"] == {"method": "archive-sha256", "value": hashlib.sha256(archive.read_bytes()).hexdigest(),
                               "archive": str(archive)}
    assert identity_changed(inp, vsi) is None
    assert res.record["qa"]["verdict"] in ("pass", "warn")  # the geometry check reopened the input through GDAL


def test_a_changed_archive_is_seen(zipped_scene, tmp_path):
    _, archive, vsi = zipped_scene
    before = input_identity(vsi)
    with zipfile.ZipFile(archive, "a") as z:
        z.writestr("other.txt", "more")
    assert identity_changed({"identity": before}, vsi) == "input changed (content)"


def test_a_local_file_keeps_its_sha256_and_size(make_tif, tmp_path):
    path = make_tif(np.zeros((3, 40, 50), np.float32))
    res = segment_scene(path, identity_handle(), tmp_path / "out", RunOptions(**CPU))
    inp = res.record["input"]
    sha = hashlib.sha256(path.read_bytes()).hexdigest()
    assert inp["identity"] == {"method": "sha256", "value": sha} and inp["sha256"] == sha
    assert inp["size_bytes"] == path.stat().st_size and identity_changed(inp, path) is None
    legacy = {"sha256": sha, "size_bytes": path.stat().st_size}  # a record from before identities
    assert identity_changed(legacy, path) is None
    path.write_bytes(path.read_bytes() + b"\0")
    assert identity_changed(inp, path) == "input changed (size)"


def test_a_missing_member_of_an_archive_is_one_clear_error(zipped_scene, tmp_path):
    _, archive, _ = zipped_scene
    with pytest.raises(InputError, match=r"/vsizip//.*s\.zip/nope\.tif: not a readable raster"):
        segment_file(f"/vsizip/{archive}/nope.tif", identity_handle(), tmp_path / "out", RunOptions(**CPU))
    assert not (tmp_path / "out").exists()


def test_a_nifti_on_a_gdal_path_is_refused_in_one_line(tmp_path):
    with pytest.raises(InputError, match="NIfTI volumes are read from local files only"):
        segment_file("/vsis3/bucket/ct.nii.gz", identity_handle(2), tmp_path / "out", RunOptions(**CPU))


def _dicom_bytes() -> bytes:
    return b"\0" * 128 + b"DICM" + b"\x02\x00\x00\x00UL\x04\x00" + b"\0" * 64


@pytest.mark.parametrize("name", ["slice001", "slice001.dcm"])
def test_dicom_files_and_folders_are_named_as_dicom_with_the_conversion_command(tmp_path, name):
    folder = tmp_path / "series"
    folder.mkdir()
    for i in range(3):
        (folder / name.replace("001", f"{i:03d}")).write_bytes(_dicom_bytes())
    for target in (folder, folder / name):
        with pytest.raises(InputError) as err:
            segment_file(target, identity_handle(2), tmp_path / "out", RunOptions(**CPU))
        msg = str(err.value)
        assert "DICOM is not read" in msg and "dcm2niix" in msg and str(folder) in msg and "\n" not in msg
        assert "GeoTIFF" not in msg


def test_the_gdal_functions_are_called_in_rasterios_gdal_even_beside_pyogrios():
    import pyogrio  # noqa: F401 - loads a GDAL of its own (another version, other codecs)

    from pipeline import gdal_lib

    assert gdal_lib.version() == rasterio.__gdal_version__
    assert "ZSTD" in {v.text for v in gdal_lib.creation_options("COG")["COMPRESS"].iter("Value")}


def test_without_headers_a_gdal_path_is_identified_by_its_header_and_sampled_blocks():
    from rasterio.io import MemoryFile

    data = np.random.default_rng(5).integers(0, 200, (2, 300, 300)).astype(np.uint8)
    profile = dict(driver="GTiff", width=300, height=300, count=2, dtype="uint8", tiled=True, blockxsize=64,
                   blockysize=64, crs="EPSG:32633", transform=rasterio.Affine(10, 0, 0, 0, -10, 0))
    with MemoryFile() as mem:
        with mem.open(**profile) as ds:
            ds.write(data)
        ident = input_identity(mem.name)  # /vsimem/...: neither an archive nor on the network
        assert ident["method"] == "sample-sha256" and input_identity(mem.name) == ident
        assert identity_changed({"identity": ident}, mem.name) is None
    with MemoryFile() as other:  # the same header, other pixels in the sampled blocks
        with other.open(**profile) as ds:
            ds.write(data[:, ::-1])
        assert input_identity(other.name)["value"] != ident["value"]
