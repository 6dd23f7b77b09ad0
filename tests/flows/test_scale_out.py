"""Scale-out on one machine: a real Prefect server, two process workers, one batch fanned out."""

from __future__ import annotations

import re
import subprocess
import sys
import time

import pytest

from flows.batch_flow import segment_batch
from flows.config import JobConfig
from flows.deploy import SCENE_QUEUE, ZOMBIE_AUTOMATION, LocalServer, deploy_to_pool
from pipeline.run.record import read_record

from .conftest import child_env

POOL = "segpipe-test-gpu"
N_SCENES = 2  # one round: each --limit 1 worker must take one (keeps the test near a minute)


@pytest.fixture
def server(tmp_path):
    with LocalServer(home=tmp_path / "prefect-home", log_path=tmp_path / "server.log") as s:
        yield s


def start_worker(i, server, tmp_path):
    log = open(tmp_path / f"worker{i}.log", "wb")
    env = child_env(server.api_url, PREFECT_HOME=str(tmp_path / "prefect-home"), CUDA_VISIBLE_DEVICES=str(i),
                    PREFECT_WORKER_QUERY_SECONDS="1", PREFECT_WORKER_HEARTBEAT_SECONDS="5")
    cmd = [sys.executable, "-m", "prefect", "worker", "start", "--pool", POOL, "--type", "process",
           "--work-queue", SCENE_QUEUE, "--limit", "1", "--name", f"gpu{i}"]
    return subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                            start_new_session=True)


def wait_for_workers(client, n, timeout=120):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        online = [w for w in client.read_workers_for_work_pool(POOL) if w.status.value == "ONLINE"]
        if len(online) >= n:
            return
        time.sleep(0.5)
    raise AssertionError(f"{n} workers not online after {timeout} s")


def test_two_workers_share_one_batch_each_scene_once(prefect_server, server, make_checkpoint, tmp_path):
    from prefect.automations import Automation
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowFilter, FlowFilterName
    from prefect.settings import PREFECT_API_URL, temporary_settings

    from data.synthetic import write_scene

    inputs, out = tmp_path / "in", tmp_path / "out"
    inputs.mkdir()
    for i in range(N_SCENES):
        write_scene(inputs / f"s{i}.tif", 96, 96, bands=1, seed=i)
    job = JobConfig(inputs=[str(inputs)], model=str(make_checkpoint(0)), out=str(out), workers=1,
                    fan_out=True, poll_s=0.5, max_wait_h=0.1)
    workers = []
    with temporary_settings({PREFECT_API_URL: server.api_url}):
        names = deploy_to_pool(job, pool=POOL, schedule=None, fan_out=True)
        assert names == ["segment-batch/segpipe-batch", "segment-scene/segpipe-scene"]
        try:
            workers = [start_worker(i, server, tmp_path) for i in range(2)]
            with get_client(sync_client=True) as client:
                wait_for_workers(client, 2)
            state = segment_batch(job, return_state=True)
            with get_client(sync_client=True) as client:
                runs = client.read_flow_runs(flow_filter=FlowFilter(name=FlowFilterName(any_=["segment-scene"])))
                batch_dep = client.read_deployment_by_name("segment-batch/segpipe-batch")
            zombie = Automation.read(name=ZOMBIE_AUTOMATION)
        finally:
            for w in workers:
                w.terminate()
            for w in workers:
                try:
                    w.wait(20)
                except subprocess.TimeoutExpired:
                    w.kill()

    assert state.is_completed(), state.message
    assert sorted(r.name for r in runs) == [f"s{i}" for i in range(N_SCENES)]  # one flow run per scene
    assert all(r.state.is_completed() for r in runs)
    for i in range(N_SCENES):
        assert read_record(out / f"s{i}") is not None
    # Each scene ran under exactly one worker, and both workers took part.
    ran = [re.findall(r"Beginning (?:sub)?flow run '([^']+)'", (tmp_path / f"worker{i}.log").read_text())
           for i in range(2)]
    assert sorted(ran[0] + ran[1]) == [f"s{i}" for i in range(N_SCENES)], ran
    assert all(ran), f"one worker took every scene: {ran}"
    # Nightly runs never overlap.
    assert batch_dep.global_concurrency_limit.limit == 1
    assert batch_dep.concurrency_options.collision_strategy.value == "CANCEL_NEW"
    # A dead worker's run is marked Crashed by the server (proactive heartbeat trigger).
    assert zombie.trigger.posture.value == "Proactive" and zombie.actions[0].state.value == "CRASHED"
