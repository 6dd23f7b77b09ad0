"""Output folders: staged and swapped in whole, locked against a second run, repaired after a kill."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest

from pipeline.files import RECORD_NAME
from pipeline.qa.run_report import write_run_report, write_scene_error
from pipeline.run.folder import SceneBusy, SceneChanged, SceneFolder, record_token


def _hold_lock(out, name):
    """A child process that takes scene ``name``'s lock and waits to be killed; returns it once it holds it."""
    code = textwrap.dedent(f"""
        import sys, time
        from pipeline.run.folder import SceneFolder
        f = SceneFolder({str(out)!r}, {name!r})
        staging = f.begin()
        (staging / ".{name}_mask.tif.1234abcd.partial.tif").write_bytes(b"half a mask")
        print(staging, flush=True)
        time.sleep(120)
    """)
    env = {**os.environ, "PYTHONPATH": os.getcwd()}
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True, env=env,
                            start_new_session=True)
    staging = proc.stdout.readline().strip()
    assert staging, "the child never took the lock"
    return proc, staging


def test_a_second_run_finds_the_scene_locked_and_a_killed_holder_leaves_no_stale_lock(tmp_path):
    out = tmp_path / "out"
    proc, staging = _hold_lock(out, "s1")
    try:
        with pytest.raises(SceneBusy, match=rf"out/s1: being written by another run \(pid {proc.pid} on "):
            SceneFolder(out, "s1").begin()
        assert os.path.isdir(staging)  # the live run's files are untouched by the refused run
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    f = SceneFolder(out, "s1")
    mine = f.begin()  # the kernel released the dead run's lock: no stale lock
    assert not os.path.exists(staging)  # ... and its staging folder is cleaned, now that nobody owns it
    assert mine.name == "s1" and mine.is_dir()
    f.abort()


def test_a_run_that_looked_before_another_completed_the_scene_touches_nothing(tmp_path):
    out = tmp_path / "out"
    seen = record_token(out / "s")  # what this run saw when it decided to make the scene: nothing
    assert seen == ""
    other = SceneFolder(out, "s")  # meanwhile another run makes it, start to end
    (other.begin() / RECORD_NAME).write_text("the other run")
    other.commit()
    with pytest.raises(SceneChanged, match=r"out/s: completed by another run meanwhile"):
        SceneFolder(out, "s").begin(expect=seen)
    assert (out / "s" / RECORD_NAME).read_text() == "the other run"
    assert list((out / ".segpipe" / "staging").iterdir()) == []
    f = SceneFolder(out, "s")  # the lock was released; a run that saw the new record may go on
    assert f.begin(expect=record_token(out / "s")).name == "s"
    f.abort()


def test_commit_swaps_the_whole_folder_in_and_drops_what_this_run_did_not_make(tmp_path):
    out = tmp_path / "out"
    first = SceneFolder(out, "s")
    d = first.begin()
    for name in ("s_mask.tif", "s_confidence.tif", RECORD_NAME):
        (d / name).write_text("run 1")
    assert first.commit() == out / "s"
    write_scene_error(out / "s", "a later failure")
    second = SceneFolder(out, "s")
    d = second.begin()
    for name in ("s_mask.tif", RECORD_NAME):
        (d / name).write_text("run 2")
    assert sorted(p.name for p in (out / "s").iterdir()) == ["record.json", "s_confidence.tif", "s_mask.tif"]
    second.commit()
    assert {p.name: p.read_text() for p in (out / "s").iterdir()} == {"s_mask.tif": "run 2", RECORD_NAME: "run 2"}
    assert not (out / ".segpipe" / "errors" / "s.json").exists()  # a success clears the failure on record
    assert list((out / ".segpipe" / "staging").iterdir()) == []


def test_abort_leaves_the_previous_folder_exactly_as_it_was(tmp_path):
    out = tmp_path / "out"
    f = SceneFolder(out, "s")
    (f.begin() / RECORD_NAME).write_text("good")
    f.commit()
    g = SceneFolder(out, "s")
    (g.begin() / "s_mask.tif").write_text("half")
    g.abort()
    assert {p.name: p.read_text() for p in (out / "s").iterdir()} == {RECORD_NAME: "good"}


def test_a_swap_cut_in_half_is_finished_by_the_next_run(tmp_path):
    out = tmp_path / "out"
    done = out / ".segpipe" / "staging" / "0badc0de" / "s"  # complete, but never renamed into place
    done.mkdir(parents=True)
    (done / RECORD_NAME).write_text("new")
    f = SceneFolder(out, "s")
    f.begin()
    assert (out / "s" / RECORD_NAME).read_text() == "new"
    f.abort()
    assert (out / "s" / RECORD_NAME).read_text() == "new"


def test_a_killed_report_write_leaves_a_partial_the_next_report_removes(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    stray = out / ".run_report.html.1a2b3c4d.partial"
    stray.write_text("<html>half")
    write_run_report(out, [], run_id="r1", job="j")
    assert not stray.exists() and (out / "run_report.html").is_file()


def test_a_report_locked_by_a_live_run_is_waited_for(tmp_path, monkeypatch):
    import pipeline.qa.run_report as rr
    from pipeline.files import FileLock

    out = tmp_path / "out"
    out.mkdir()
    lock = FileLock(out / ".segpipe" / "locks" / "run_report.lock")
    code = f"from pipeline.files import FileLock; import time; FileLock(__import__('pathlib').Path({str(lock.path)!r})).acquire(); print('held', flush=True); time.sleep(2)"
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONPATH": os.getcwd()})
    assert proc.stdout.readline().strip() == "held"
    t = time.perf_counter()
    write_run_report(out, [], run_id="r1", job="j")
    assert time.perf_counter() - t > 0.5  # it waited for the other writer to finish
    proc.wait()
    assert rr.REPORT_LOCK_WAIT_S > 0


def test_every_file_a_reviewer_reads_follows_the_umask(make_tif, tmp_path):
    import numpy as np

    from pipeline.options import RunOptions
    from pipeline.run import segment_file

    from ..conftest import identity_handle
    from ..volume.test_run import CPU as VCPU, handle, make

    old = os.umask(0o022)
    try:
        out = tmp_path / "out"
        data = np.random.default_rng(0).random((3, 80, 70)).astype(np.float32)
        segment_file(make_tif(data), identity_handle(), out, RunOptions(confidence=True, probabilities=True,
                                                                        device="cpu", workers=1))
        vol = np.random.default_rng(5).integers(-200, 800, size=(40, 48, 12), dtype=np.int16)
        segment_file(make(tmp_path, vol, "lps"), handle(3), out, RunOptions(confidence=True, **VCPU))
        write_run_report(out, run_id="r", job="j")
    finally:
        os.umask(old)
    files = [p for p in out.rglob("*") if p.is_file() and ".segpipe" not in p.parts]
    assert len(files) > 10
    modes = {p.relative_to(out).as_posix(): oct(p.stat().st_mode & 0o777) for p in files}
    assert set(modes.values()) == {"0o644"}, modes
