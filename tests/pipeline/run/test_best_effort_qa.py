"""A QA observer that raises never loses the segmentation: the outputs and the record are written,
and the QA report says QA failed and why."""

from __future__ import annotations

import json

import numpy as np
import pytest
import rasterio

from pipeline.options import RunOptions
from pipeline.qa import SceneQA
from pipeline.run import segment_file

from ..conftest import identity_handle

CPU = dict(device="cpu", batch_size=3, workers=2)


@pytest.fixture
def qa_breaks_at_the_second_band(monkeypatch):
    """SceneQA's streaming step (in QA's own thread) raises on the second band or slice it sees."""
    seen = []

    def breaking(real):
        def observe(self, *args):
            seen.append(args[0])
            if len(seen) == 2:
                raise ZeroDivisionError("QA bug at the second band")
            return real(self, *args)

        return observe

    monkeypatch.setattr(SceneQA, "_observe_band", breaking(SceneQA._observe_band))
    monkeypatch.setattr(SceneQA, "_observe_slice", breaking(SceneQA._observe_slice))
    return seen


def _failed_report(scene_dir, record):
    qa = json.loads((scene_dir / "qa.json").read_text())
    assert qa["verdict"]["status"] == "fail"
    assert [r["code"] for r in qa["verdict"]["reasons"]] == ["qa_failed"]
    assert "ZeroDivisionError: QA bug at the second band" in qa["verdict"]["reasons"][0]["message"]
    assert "QA could not be completed" in (scene_dir / "qa.html").read_text()
    assert record["qa"]["verdict"] == "fail" and "QA bug" in record["qa"]["error"]
    assert qa["checks"] and all(c["status"] != "fail" for c in qa["checks"])  # the outputs were still checked


def test_a_scene_whose_qa_raises_keeps_its_mask_and_record(make_tif, tmp_path, qa_breaks_at_the_second_band):
    data = np.random.default_rng(0).random((3, 200, 170)).astype(np.float32)
    res = segment_file(make_tif(data), identity_handle(tile=64, overlap=16), tmp_path / "out",
                       RunOptions(confidence=True, **CPU))
    assert len(qa_breaks_at_the_second_band) >= 2  # it did break, after the first band
    with rasterio.open(res.outputs["mask"]) as ds:
        np.testing.assert_array_equal(ds.read(1), data.argmax(0))  # complete and right
    assert res.outputs["confidence"].is_file()
    record = json.loads(res.record_path.read_text())
    assert record["status"] == "complete" and record["outputs"]["mask"] == res.outputs["mask"].name
    _failed_report(res.scene_dir, record)


def test_a_volume_whose_qa_raises_keeps_its_labels_and_record(tmp_path, qa_breaks_at_the_second_band):
    from ..volume.test_run import CPU as VCPU, THRESHOLD, handle, labels_of, make

    vol = np.random.default_rng(5).integers(-200, 800, size=(40, 48, 12), dtype=np.int16)
    res = segment_file(make(tmp_path, vol, "lps"), handle(3), tmp_path / "out", RunOptions(**VCPU))
    np.testing.assert_array_equal(labels_of(res.outputs["labels"]), (vol > THRESHOLD).astype(np.uint8))
    record = json.loads(res.record_path.read_text())
    assert record["status"] == "complete"
    _failed_report(res.scene_dir, record)


def test_segpipe_run_exits_0_and_says_where_the_failed_report_is(make_tif, tmp_path, qa_breaks_at_the_second_band,
                                                                  monkeypatch, capsys):
    from flows import cli_run
    from flows.cli import main

    data = np.random.default_rng(0).random((3, 200, 170)).astype(np.float32)
    monkeypatch.setattr("models.checkpoint.load_checkpoint", lambda path: identity_handle(tile=64, overlap=16))
    rc = main(["run", str(make_tif(data)), "--model", "m.safetensors", "--out", str(tmp_path / "out"),
               "--device", "cpu", "--quiet"])
    assert rc in (0, 4)  # complete; 4 is the QA-failure code where one is defined
    assert (tmp_path / "out" / "scene" / "record.json").is_file()
    assert cli_run is not None


def test_a_volume_checkpoint_given_a_scene_is_one_line_naming_both(make_tif, tmp_path):
    from pipeline.errors import CheckpointError

    from ..conftest import Handle, Identity
    from pipeline.spec import ModelSpec

    volume_model = Handle(Identity(), ModelSpec(3, (1,), ("a", "b", "c"), context=3, tile=64, overlap=16),
                          path=tmp_path / "ct.safetensors")
    scene = make_tif(np.random.default_rng(0).random((3, 50, 50)).astype(np.float32))
    with pytest.raises(CheckpointError, match=r"ct.safetensors: a volume checkpoint \(2.5D context 3\) given the "
                                              r"raster scene .*scene.tif; expected a scene checkpoint"):
        segment_file(scene, volume_model, tmp_path / "out", RunOptions(**CPU))
    assert not (tmp_path / "out").exists()  # refused before anything was made


def test_a_checkpoint_trained_on_scenes_given_a_volume_is_refused(tmp_path):
    from pipeline.errors import CheckpointError

    from ..volume.test_run import CPU as VCPU, handle, make

    model = handle(1)
    model.metadata = {"training": {"input_kind": "scene"}}
    vol = np.random.default_rng(5).integers(-200, 800, size=(40, 48, 12), dtype=np.int16)
    with pytest.raises(CheckpointError, match=r"a scene checkpoint \(trained on scenes\) given the volume .*ct"):
        segment_file(make(tmp_path, vol, "lps"), model, tmp_path / "out", RunOptions(**VCPU))
