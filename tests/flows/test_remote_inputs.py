"""GDAL virtual paths wherever a batch takes a path: inputs, job files, manifests; skip when unchanged."""

from __future__ import annotations

import zipfile

import pytest

from data.synthetic import write_scene
from flows.config import load_job
from flows.inputs import plan_batch
from flows.scenes import process_scene, stale_reason
from pipeline.errors import ConfigError


@pytest.fixture
def archive(tmp_path):
    write_scene(tmp_path / "z.tif", 96, 112, bands=1, seed=4)
    path = tmp_path / "scenes.zip"
    with zipfile.ZipFile(path, "w") as z:
        z.write(tmp_path / "z.tif", "inner/z.tif")
    return path


def test_job_files_and_manifests_keep_gdal_paths_as_written(archive, tmp_path, make_checkpoint):
    vsi = f"/vsizip/{archive}/inner/z.tif"
    (tmp_path / "list.txt").write_text(f"# scenes\n{vsi}\n")
    (tmp_path / "rows.csv").write_text("path,tile\n/vsis3/bucket/k/w.tif,128\n")
    job_file = tmp_path / "job.yaml"
    job_file.write_text(f"inputs: ['{vsi}', list.txt, rows.csv]\nmodel: m.safetensors\nout: out\n")
    job = load_job(job_file)
    assert job.inputs[0] == vsi  # not joined with the job's folder, not Path()-collapsed
    plans = plan_batch(job)
    assert [p.input for p in plans] == [vsi, "/vsis3/bucket/k/w.tif"]  # the listing's duplicate dropped
    assert [p.name for p in plans] == ["z", "w"] and plans[1].options.tile == 128


def test_a_dicom_folder_in_a_batch_is_named_as_dicom(tmp_path):
    folder = tmp_path / "ct"
    folder.mkdir()
    (folder / "IM0001").write_bytes(b"\0" * 128 + b"DICM" + b"\0" * 32)
    job = load_job(None, {"inputs": [str(folder)], "model": "m.safetensors", "out": str(tmp_path / "out")})
    with pytest.raises(ConfigError, match="DICOM is not read.*dcm2niix"):
        plan_batch(job)


def test_a_gdal_input_is_skipped_when_unchanged_and_redone_when_changed(archive, tmp_path, make_checkpoint):
    from flows.scenes import get_model
    from pipeline.options import RunOptions

    vsi, ckpt, out = f"/vsizip/{archive}/inner/z.tif", make_checkpoint(0), tmp_path / "out"
    settings = RunOptions(device="cpu", workers=1)
    first = process_scene(vsi, ckpt, out, settings)
    assert first.status == "done" and first.input == vsi
    assert process_scene(vsi, ckpt, out, settings).status == "skipped"
    with zipfile.ZipFile(archive, "a") as z:
        z.writestr("note.txt", "the archive was rewritten")
    assert stale_reason(vsi, out / "z", get_model(ckpt), settings) == "input changed (content)"
