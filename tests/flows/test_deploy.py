"""Deployments as ``segpipe serve``/``deploy`` build them (no server needed to inspect them)."""

from __future__ import annotations

import pytest

from flows import deploy
from flows.config import JobConfig
from flows.deploy import Schedule, batch_deployment
from pipeline.errors import ConfigError


def test_nightly_batch_deployment_never_overlaps_and_runs_at_2_local():
    job = JobConfig(inputs=["/data"], model="/m.safetensors", out="/out/landcover", tta=True)
    batch = batch_deployment(job, Schedule("0 2 * * *", "Europe/Berlin"))
    (sched,) = batch.schedules
    assert (sched.schedule.cron, sched.schedule.timezone) == ("0 2 * * *", "Europe/Berlin")
    assert batch.concurrency_limit == 1
    assert batch.concurrency_options.collision_strategy.value == "CANCEL_NEW"
    # the job travels whole, with the schedule's zone for the run report's times (it named none)
    assert JobConfig.model_validate(batch.parameters["job"]) == job.model_copy(update={"timezone": "Europe/Berlin"})
    assert batch.entrypoint == "flows.batch_flow.segment_batch"
    assert (batch.flow_name, batch.name) == ("segment-batch", "landcover")
    assert batch.tags == ["segpipe", "job:landcover"]  # the automation matches the first, the UI filters by the second


@pytest.mark.parametrize("cron, tz, needle", [("0 2 * *", "Europe/Berlin", "5 fields"),
                                              ("0 2 * * *", "Mars/Olympus", "timezone")])
def test_bad_schedule_is_refused(cron, tz, needle):
    with pytest.raises(ConfigError, match=needle):
        Schedule(cron, tz)


def _flow_run_heartbeat(deployment) -> int:
    """The heartbeat a process worker's flow-run process gets for this deployment: the deployment's
    env job variable, else Prefect's default (the worker's own environment is not segpipe's to set)."""
    from prefect.settings.models.flows import FlowsSettings

    env = (deployment.job_variables or {}).get("env", {})
    value = env.get("PREFECT_FLOWS_HEARTBEAT_FREQUENCY")
    return int(value) if value else FlowsSettings.model_fields["heartbeat_frequency"].default


def test_zombie_window_covers_three_heartbeats_of_the_deployed_runs():
    """Issue 11: the documented worker's runs had Prefect's 180 s heartbeat against a 90 s window,
    so every healthy batch was marked Crashed after 90 s."""
    job = JobConfig(inputs=["/data"], model="/m.safetensors", out="/out")
    batch = batch_deployment(job, None, pool="segpipe")
    within = deploy.zombie_automation_spec()["trigger"]["within"]
    heartbeat = _flow_run_heartbeat(batch)
    assert heartbeat == 30 and within == 3 * heartbeat
    assert batch.work_pool_name == "segpipe"
    assert batch.job_variables["stream_output"] is False  # the run outlives its worker (no broken pipe)


def test_zombie_automation_only_watches_segpipe_runs():
    trigger = deploy.zombie_automation_spec()["trigger"]
    assert trigger["match_related"] == {"prefect.resource.role": "tag", "prefect.resource.id": "prefect.tag.segpipe"}
    assert trigger["posture"] == "Proactive" and trigger["for_each"] == ["prefect.resource.id"]


def test_the_heartbeat_is_segpipes_whatever_the_environment_says(monkeypatch):
    from flows.env import set_prefect_env

    monkeypatch.setenv("PREFECT_FLOWS_HEARTBEAT_FREQUENCY", "180")
    set_prefect_env()
    import os

    assert os.environ["PREFECT_FLOWS_HEARTBEAT_FREQUENCY"] == "30"


def test_two_jobs_get_two_deployments():
    """Issue 11: a second `segpipe deploy` replaced the first job (one fixed deployment name)."""
    a = batch_deployment(JobConfig(inputs=["/a"], model="/m.safetensors", out="/out/landcover"), None)
    b = batch_deployment(JobConfig(inputs=["/b"], model="/n.safetensors", out="/out/buildings"), None)
    c = batch_deployment(JobConfig(name="roads 2/x", inputs=["/b"], model="/n.safetensors", out="/o"), None)
    assert (a.name, b.name, c.name) == ("landcover", "buildings", "roads-2-x")
