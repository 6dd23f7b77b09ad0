"""Retries: transient errors retried (OOM with half the batch size), permanent ones not."""

from __future__ import annotations

import errno

import pytest
from prefect import flow

import flows.tasks as tasks
from flows.scenes import SceneOutcome
from pipeline.errors import CheckpointError, InputError


class FakeOOM(RuntimeError):
    pass


FakeOOM.__name__ = "OutOfMemoryError"


@pytest.fixture
def scripted(monkeypatch):
    """Replace the engine call by a script of exceptions (then success); record batch sizes seen."""
    calls = []

    def install(*errors):
        todo = list(errors)

        def fake(input, model, out, settings, progress=None, qa_thresholds=None, read_ahead=None):
            calls.append(settings.batch_size)
            if todo:
                raise todo.pop(0)
            return SceneOutcome("s", input, out + "/s", "done")

        monkeypatch.setattr(tasks, "process_scene", fake)
        return calls

    return install


def run_task():
    quick = tasks.segment_scene_task.with_options(retry_delay_seconds=0, retry_jitter_factor=None)

    @flow
    def one():
        state = quick(name="s", input="/in/s.tif", model="/m", out="/out", options={"batch_size": 8},
                      return_state=True)
        return state.is_completed()  # a bool, not the state (a returned Failed state fails the flow)

    return one()


@pytest.mark.parametrize("errors, sizes, ok", [
    ((OSError(errno.EIO, "NFS hiccup"),), [8, 8], True),                 # transient: retried
    ((FakeOOM("CUDA out of memory"), FakeOOM("CUDA out of memory")), [8, 4, 2], True),  # halved each time
    ((InputError("s.tif: not a raster"),), [8], False),                # permanent: not retried
    ((CheckpointError("m: 3 bands, input has 4"),), [8], False),
    ((FileNotFoundError("s.tif"),), [8], False),
    ((OSError(errno.EIO, "x"),) * 4, [8, 8, 8, 8], False),             # gives up after RETRIES
])
def test_retry_policy_comes_from_pipeline_errors(prefect_server, scripted, errors, sizes, ok):
    calls = scripted(*errors)
    completed = run_task()
    assert calls == sizes
    assert completed is ok
    assert not tasks._OOM_BATCH  # no leftovers between scenes (or success clears it)


def test_retry_condition_reads_the_exception():
    class S:
        def __init__(self, exc):
            self.exc = exc

        def result(self):
            raise self.exc

    assert tasks.retry_if_transient(None, None, S(OSError(errno.EIO, "x")))
    assert not tasks.retry_if_transient(None, None, S(InputError("bad")))
