"""Unattended safety: kill -9 in the middle of a scene, then run the batch again."""

from __future__ import annotations

import os
import signal
import subprocess
import time

import numpy as np

from flows.batch_flow import segment_batch
from flows.config import JobConfig
from flows.scenes import process_scene
from pipeline.run.record import read_record
from pipeline.options import RunOptions

from .conftest import child_env, read_mask, segpipe_cmd


def partials(out, name):
    """The engine's temporary files of scene ``name``: in its staging folder(s) under ``out/.segpipe``."""
    return sorted(p.name for p in (out / ".segpipe" / "staging").glob(f"*/{name}/.*partial*"))


def test_kill_9_mid_scene_then_rerun_finishes_identically(prefect_server, make_checkpoint, tmp_path):
    from data.synthetic import write_scene

    inputs, out, ref = tmp_path / "in", tmp_path / "out", tmp_path / "ref"
    inputs.mkdir()
    write_scene(inputs / "a.tif", 96, 96, bands=1, seed=1)
    write_scene(inputs / "b.tif", 384, 448, bands=1, seed=2)  # ~80 tiles, a few seconds of tiles: time to be killed
    model = make_checkpoint(0)

    proc = subprocess.Popen([*segpipe_cmd(), "batch", str(inputs), "--model", str(model), "--out", str(out),
                             "--quiet", "--workers", "1"],
                            env=child_env(prefect_server), start_new_session=True,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 240
    try:
        while not partials(out, "b"):
            assert proc.poll() is None, proc.stdout.read().decode()[-3000:]
            assert time.monotonic() < deadline, "scene b never started writing"
            time.sleep(0.02)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()

    a_record = (out / "a" / "record.json").stat().st_mtime_ns
    assert read_record(out / "a") is not None
    assert read_record(out / "b") is None  # nothing that looks finished
    assert not (out / "b").exists()
    assert partials(out, "b")  # the engine's temporary names, in the killed run's staging folder, are all that is left

    job = JobConfig(inputs=[str(inputs)], model=str(model), out=str(out), workers=1)
    state = segment_batch(job, return_state=True)
    assert state.is_completed(), state.message
    assert (out / "a" / "record.json").stat().st_mtime_ns == a_record  # not redone
    assert partials(out, "b") == []  # the killed run's leftovers are cleaned
    assert [p.name for p in (out / ".segpipe" / "staging").iterdir()] == []

    reference = process_scene(inputs / "b.tif", model, ref, RunOptions(workers=1))
    rec = read_record(out / "b")
    assert reference.status == "done" and rec["outputs"] == read_record(ref / "b")["outputs"]
    for name in rec["outputs"].values():
        assert np.array_equal(read_mask(out / "b" / name), read_mask(ref / "b" / name))
