"""Two batches on the same inputs and output at once: neither destroys the other's work."""

from __future__ import annotations

import os
import re
import signal
import subprocess

import numpy as np

from flows.scenes import process_scene
from pipeline.options import RunOptions
from pipeline.run.folder import record_token
from pipeline.run.record import read_record

from .conftest import child_env, read_mask, segpipe_cmd


def test_two_batches_started_together_both_succeed_and_each_scene_is_made_once(prefect_server, make_checkpoint,
                                                                              tmp_path):
    from data.synthetic import write_scene

    inputs, out, ref = tmp_path / "in", tmp_path / "out", tmp_path / "ref"
    inputs.mkdir()
    for i in range(3):
        write_scene(inputs / f"s{i}.tif", 256, 320, bands=1, seed=i)  # seconds each: the runs overlap
    model = make_checkpoint(0)
    cmd = [*segpipe_cmd(), "batch", str(inputs), "--model", str(model), "--out", str(out), "--quiet", "--workers", "1"]
    procs = [subprocess.Popen(cmd, env=child_env(prefect_server), start_new_session=True, stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True) for _ in range(2)]
    try:
        logs = [p.communicate(timeout=600)[0] for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                os.killpg(p.pid, signal.SIGKILL)
                p.wait()
    assert [p.returncode for p in procs] == [0, 0], "\n".join(log[-3000:] for log in logs)
    both = "\n".join(logs)
    assert "No such file or directory" not in both and "0 failed of 3" in logs[0] and "0 failed of 3" in logs[1]
    # Each scene made once: by one run, while the other skipped it (locked), or found it up to date.
    assert sum(int(re.search(r"(\d+) done", log.splitlines()[-1]).group(1)) for log in logs) == 3, both[-4000:]
    for i in range(3):
        reference = process_scene(inputs / f"s{i}.tif", model, ref, RunOptions(workers=1))
        rec = read_record(out / f"s{i}")
        assert reference.status == "done" and rec is not None
        for name in rec["outputs"].values():
            assert np.array_equal(read_mask(out / f"s{i}" / name), read_mask(ref / f"s{i}" / name))
    assert list((out / ".segpipe" / "staging").iterdir()) == []  # nothing left half-made
    assert (out / "run_report.html").is_file()


def test_a_scene_completed_by_another_run_after_our_look_is_not_made_again(make_checkpoint, tmp_path, monkeypatch):
    """The race the two batches above can hit: both look, one completes, the other must look again."""
    import flows.scenes as scenes
    from data.synthetic import write_scene

    write_scene(tmp_path / "s.tif", 64, 80, bands=1, seed=3)
    model, out = make_checkpoint(0), tmp_path / "out"
    real, looks, made = scenes.stale_reason, [], []

    def look_then_another_run_completes(*args):
        reason = real(*args)
        looks.append(reason)
        if len(looks) == 1:  # between this run's look and its lock, another run makes the scene
            monkeypatch.setattr(scenes, "stale_reason", real)
            assert process_scene(tmp_path / "s.tif", model, out, RunOptions(workers=1)).status == "done"
            made.append(record_token(out / "s"))
            monkeypatch.setattr(scenes, "stale_reason", look_then_another_run_completes)
        return reason

    monkeypatch.setattr(scenes, "stale_reason", look_then_another_run_completes)
    outcome = process_scene(tmp_path / "s.tif", model, out, RunOptions(workers=1))
    assert looks == ["no complete record", None]  # looked again after the refused lock: up to date
    assert outcome.status == "skipped" and outcome.error == ""
    assert record_token(out / "s") == made[0] != ""  # the other run's folder, not made a second time
