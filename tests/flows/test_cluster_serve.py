"""One machine stays simple: ``segpipe serve --limit 1`` with a farm job, and ``--cluster local``.

Issue 11: with fan-out, ``serve --limit 1`` deadlocked (the batch held the only slot and
waited for scene runs that could not start). Scenes are task runs now, so one slot is enough.
"""

from __future__ import annotations

import json

import pytest

from .farm_procs import Procs, batch_message, farm_env, segpipe, wait_for

pytestmark = pytest.mark.cluster


def test_serve_limit_1_runs_a_farm_job_to_the_end(make_checkpoint, tmp_path):
    from distributed import Client
    from prefect.client.orchestration import get_client
    from prefect.deployments import run_deployment
    from prefect.settings import PREFECT_API_URL, temporary_settings

    from data.synthetic import write_scene
    from flows.deploy import LocalServer, free_port

    (tmp_path / "in").mkdir()
    for i in range(3):
        write_scene(tmp_path / "in" / f"s{i}.tif", 96, 96 + 16 * i, bands=1, seed=i)
    logs = tmp_path / "logs"
    logs.mkdir()
    procs = Procs(logs)
    port = free_port()
    sched = f"tcp://127.0.0.1:{port}"
    job = tmp_path / "job.json"
    job.write_text(json.dumps(dict(name="served", inputs=[str(tmp_path / "in")], model=str(make_checkpoint(0)),
                                   out=str(tmp_path / "out"), workers=1, cluster=sched)))
    server = LocalServer(home=tmp_path / "home", log_path=logs / "server.log")
    try:
        server.start()
        procs.adopt("server", server.proc)
        env = farm_env(server.api_url, tmp_path / "home")
        procs.start("scheduler", segpipe("scheduler", "--port", str(port)), env)
        procs.start("worker", segpipe("worker", sched, "--gpus", "none"), env)
        procs.start("serve", segpipe("serve", "--config", str(job), "--limit", "1", "--no-schedule"), env)
        with temporary_settings({PREFECT_API_URL: server.api_url}), get_client(sync_client=True) as client:
            wait_for(lambda: _deployment_exists(client, "segment-batch/served"), 120, "the served deployment")
            with Client(sched, timeout="60s") as dask:
                dask.wait_for_workers(1, timeout=120)
            run = run_deployment("segment-batch/served", timeout=0)
            wait_for(lambda: client.read_flow_run(run.id).state.is_final(), 300, "the served batch")
            state = client.read_flow_run(run.id).state
    finally:
        procs.note_children()
        alive = procs.stop_all()
        server.stop()
    assert state.is_completed(), f"{state.name}: {state.message}\n{procs.log('serve')[-3000:]}"
    assert state.message == batch_message(tmp_path / "out", "3 done, 0 skipped, 0 failed of 3")
    assert "Unexpected result" not in procs.log("serve")
    assert alive == []


def _deployment_exists(client, name: str) -> bool:
    from prefect.exceptions import ObjectNotFound

    try:
        client.read_deployment_by_name(name)
    except ObjectNotFound:
        return False
    return True


def test_batch_on_a_local_cluster_one_command(prefect_server, make_checkpoint, tmp_path):
    """``segpipe batch --cluster local``: a temporary scheduler and one worker per GPU (here: one
    CPU worker), gone when the batch ends; the outcomes name that worker process, not this one."""
    import os

    from data.synthetic import write_scene
    from flows.batch_flow import progress_listener, segment_batch
    from flows.config import JobConfig

    (tmp_path / "in").mkdir()
    for i in range(2):
        write_scene(tmp_path / "in" / f"s{i}.tif", 96, 96, bands=1, seed=i)
    job = JobConfig(inputs=[str(tmp_path / "in")], model=str(make_checkpoint(0)), out=str(tmp_path / "out"),
                    workers=1, cluster="local")
    seen = []
    with progress_listener(lambda done, total, o: seen.append(o)):
        state = segment_batch(job, return_state=True)
    assert state.is_completed(), state.message
    workers = {o.worker for o in seen}
    assert len(workers) == 1 and not workers.pop().endswith(f":{os.getpid()}")  # one warm worker, not us
    rows = json.loads((tmp_path / "out" / "run_summary.json").read_text())["rows"]
    assert sorted(r["scene"] for r in rows) == ["s0", "s1"]
    summary = state.result()
    verdicts = batch_message(tmp_path / "out", "").removesuffix(" ()")
    assert summary == {"done": 2, "skipped": 0, "failed": 0, "total": 2, "qa_fail": 0, "verdicts": verdicts}
