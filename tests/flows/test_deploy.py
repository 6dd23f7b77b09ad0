"""Deployments as ``segpipe serve``/``deploy`` build them (no server needed to inspect them)."""

from __future__ import annotations

import pytest

from flows.config import JobConfig
from flows.deploy import Schedule, _deployments
from pipeline.errors import ConfigError


def test_nightly_batch_deployment_never_overlaps_and_runs_at_2_local():
    job = JobConfig(inputs=["/data"], model="/m.safetensors", out="/out", tta=True)
    batch, scene = _deployments(job, Schedule("0 2 * * *", "Europe/Berlin"))
    (sched,) = batch.schedules
    assert (sched.schedule.cron, sched.schedule.timezone) == ("0 2 * * *", "Europe/Berlin")
    assert batch.concurrency_limit == 1
    assert batch.concurrency_options.collision_strategy.value == "CANCEL_NEW"
    assert JobConfig.model_validate(batch.parameters["job"]) == job  # the job travels whole
    assert batch.entrypoint == "flows.batch_flow.segment_batch"
    assert scene.entrypoint == "flows.scene_flow.segment_scene_flow" and not scene.schedules


@pytest.mark.parametrize("cron, tz, needle", [("0 2 * *", "Europe/Berlin", "5 fields"),
                                              ("0 2 * * *", "Mars/Olympus", "timezone")])
def test_bad_schedule_is_refused(cron, tz, needle):
    with pytest.raises(ConfigError, match=needle):
        Schedule(cron, tz)
