"""Job configs, input discovery and manifests: bad jobs fail at load time, naming the field."""

from __future__ import annotations

import argparse

import pytest

from flows.cli_batch import add_job_options, job_from_args
from flows.cli_run import add_run_options, options_from_args
from flows.config import RUN_OPTION_NAMES, JobConfig, load_job
from flows.inputs import plan_batch
from pipeline.errors import ConfigError


def touch(path):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"")
    return path


def test_every_run_option_is_a_job_field_and_converts_the_same():
    p = argparse.ArgumentParser()
    add_run_options(p)
    dests = {a.dest for a in p._actions if a.dest not in ("help", "model", "out")}
    assert dests == set(RUN_OPTION_NAMES)
    argv = ["--model", "m", "--out", "o", "--tile", "256", "--overlap", "32", "--blend", "hann", "--batch-size", "3",
            "--device", "cpu", "--precision", "fp32", "--tta", "--confidence", "--probabilities", "--workers", "2",
            "--compress", "zstd", "--nodata-rule", "any-band", "--slice-axis", "1", "--context", "3", "--volume", "2",
            "--co", "LEVEL=9", "--co", "BLOCKSIZE=256", "--vectors", "--vector-classes", "water",
            "--vector-simplify", "1.5", "--vector-min-area", "100"]
    args = p.parse_args(argv)
    job = JobConfig(model="m", out="o", **{k: getattr(args, k) for k in RUN_OPTION_NAMES})
    assert job.run_options() == options_from_args(args)


@pytest.mark.parametrize("field, value, needle", [
    ("tile", 100, "tile"), ("blend", "cubic", "blend"), ("batch_size", 0, "batch_size"),
    ("precision", "fp8", "precision"), ("device", "gpu", "device"), ("tilesize", 512, "tilesize"),
    ("device", "mps", "device"),  # the engine runs on cpu or cuda only: refused here, not scene by scene
])
def test_bad_field_fails_at_load_with_its_name(tmp_path, field, value, needle):
    f = tmp_path / "job.yaml"
    f.write_text(f"model: m.safetensors\nout: out\n{field}: {value}\n")
    with pytest.raises(ConfigError, match=needle) as info:
        load_job(f)
    assert str(f) in str(info.value)


def test_job_file_paths_are_relative_to_it_and_cli_overrides(tmp_path):
    f = tmp_path / "jobs" / "night.yaml"
    f.parent.mkdir()
    f.write_text("inputs: scenes/\nmodel: m.safetensors\nout: /results\ntile: 256\ntta: true\n")
    p = argparse.ArgumentParser()
    add_job_options(p)
    job = job_from_args(p.parse_args(["--config", str(f), "--tile", "128"]))
    assert job.inputs == [str(f.parent / "scenes/")] and job.model == str(f.parent / "m.safetensors")
    assert (job.tile, job.tta, job.blend, job.out) == (128, True, "gaussian", "/results")
    json_job = tmp_path / "j.json"
    json_job.write_text('{"model": "/m", "out": "/o", "inputs": ["/x"], "compress": "zstd"}')
    assert load_job(json_job).compress == "zstd"


def test_inputs_from_folder_glob_and_manifests(tmp_path):
    a, b = touch(tmp_path / "d" / "a.tif"), touch(tmp_path / "d" / "b.nii.gz")
    touch(tmp_path / "d" / "notes.md")
    c = touch(tmp_path / "e" / "c.tif")
    lst = tmp_path / "list.txt"
    lst.write_text("# tonight\ne/c.tif\n\n")
    csv = tmp_path / "m.csv"
    csv.write_text("path,tile,tta\nd/a.tif,128,true\ne/c.tif,,\n")
    out = tmp_path / "out"

    plans = plan_batch(JobConfig(inputs=[str(tmp_path / "d"), str(lst)], model="m", out=str(out), tile=256))
    assert [(p.input, p.scene_dir.name, p.options.tile) for p in plans] == [(a, "a", 256), (b, "b", 256), (c, "c", 256)]

    plans = plan_batch(JobConfig(manifest=str(csv), model="m", out=str(out), tile=256))
    assert [(p.name, p.options.tile, p.options.tta) for p in plans] == [("a", 128, True), ("c", 256, False)]

    plans = plan_batch(JobConfig(inputs=[str(tmp_path / "*" / "*.tif")], model="m", out=str(out)))
    assert [p.name for p in plans] == ["a", "c"]


def test_bad_manifests_and_name_clashes_are_refused_up_front(tmp_path):
    touch(tmp_path / "x" / "s.tif")
    touch(tmp_path / "y" / "s.tif")
    job = JobConfig(inputs=[str(tmp_path / "x"), str(tmp_path / "y")], model="m", out=str(tmp_path / "o"))
    with pytest.raises(ConfigError, match=r"name clash.*s/ <- .*x/s.tif, .*y/s.tif"):
        plan_batch(job)
    bad = tmp_path / "bad.csv"
    bad.write_text("path,tiles\nx/s.tif,256\n")
    with pytest.raises(ConfigError, match=r"unknown manifest column.*tiles"):
        plan_batch(JobConfig(manifest=str(bad), model="m", out="o"))
    bad.write_text("path,tile\nx/s.tif,100\n")
    with pytest.raises(ConfigError, match=r"s.tif \(manifest row\).*tile"):
        plan_batch(JobConfig(manifest=str(bad), model="m", out="o"))
    with pytest.raises(ConfigError, match="input not found"):
        plan_batch(JobConfig(inputs=[str(tmp_path / "nope.tif")], model="m", out="o"))
