"""The farm as an operator runs it (docs/operations.md, section 4), on 127.0.0.1.

A real Prefect server (SQLite), a Dask scheduler (``segpipe scheduler``), an orchestrator
(a Prefect process worker started without any segpipe setting), two ``segpipe worker``
processes (``--gpus none``: CPU, tiny scenes, a small model). Job A (12 scenes) is deployed
with ``segpipe deploy`` and triggered; its workers come up only after three zombie windows
(machines that boot late, or a farm busy elsewhere: the batch waits, alive, and must not be
marked Crashed). Meanwhile job B (another model, another output, no cluster) is deployed
beside it and runs until its orchestrator "machine" dies (the orchestrator worker and B's
run process SIGKILLed): the automation marks B Crashed, a new orchestrator is started and B
re-triggered, and it finishes what was left. The same inputs as A's are segmented by a
local ``segpipe batch`` for reference. One worker process is killed with SIGKILL in the
middle of one of A's scenes.

Prefect does not allow heartbeats under 30 s, so the windows are segpipe's own (30 s
heartbeats, 90 s window): the night lasts more than 270 s. One scenario, several tests.
"""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path

import numpy as np
import pytest

from flows.env import HEARTBEAT_S, ZOMBIE_AFTER_S

from .conftest import read_mask
from .farm_procs import Procs, batch_message, farm_env, prefect, segpipe, wait_for

pytestmark = pytest.mark.cluster

POOL = "segpipe-test"
N_SCENES = 12
N_B = 4


def write_job(path: Path, **fields) -> Path:
    path.write_text(json.dumps(fields))
    return path


def read_run(run_id):
    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as client:
        return client.read_flow_run(run_id)


def trigger(name: str):
    from prefect.deployments import run_deployment

    return run_deployment(name, timeout=0).id


def mid_scene(client, out: Path) -> tuple[str, str] | None:
    """(worker address, scene) of a scene being written right now, if any."""
    for addr, keys in client.processing().items():
        for key in keys:
            scene = str(key).split("-")[0]
            # a run writes into its staging folder (pipeline.run.folder), swapped in when complete
            if any((out / ".segpipe" / "staging").glob(f"*/{scene}/.*partial*")) \
                    and not (out / scene / "record.json").exists():
                return addr, scene
    return None


@pytest.fixture(scope="module")
def night(tmp_path_factory, make_checkpoint):
    from distributed import Client
    from prefect.settings import PREFECT_API_URL, temporary_settings

    from data.synthetic import write_scene
    from flows.deploy import LocalServer, free_port

    root = tmp_path_factory.mktemp("farm")
    inputs = root / "in"
    inputs.mkdir()
    for i in range(N_SCENES):
        write_scene(inputs / f"s{i:02d}.tif", 96 + 32 * (i % 3), 128, bands=1, seed=i)
    (root / "in-b").mkdir()
    for i in range(N_B):
        write_scene(root / "in-b" / f"b{i}.tif", 128, 128, bands=1, seed=50 + i)
    home, logs = root / "prefect-home", root / "logs"
    logs.mkdir()
    procs = Procs(logs)
    facts: dict = {"root": root}
    server = LocalServer(home=home, log_path=logs / "server.log")
    try:
        server.start()
        procs.adopt("server", server.proc)
        with temporary_settings({PREFECT_API_URL: server.api_url}):
            _run_night(facts, procs, server, root, inputs, home, make_checkpoint, free_port, Client)
    finally:
        procs.note_children()
        facts["left_alive"] = procs.stop_all()
        server.stop()
        facts["server_alive"] = server.proc is not None
    return facts


def _run_night(facts, procs, server, root, inputs, home, make_checkpoint, free_port, Client):
    env = farm_env(server.api_url, home)
    port = free_port()
    sched = f"tcp://127.0.0.1:{port}"
    procs.start("scheduler", segpipe("scheduler", "--port", str(port)), env)
    job_a = write_job(root / "a.json", name="nightly-a", inputs=[str(inputs)], model=str(make_checkpoint(0)),
                      out=str(root / "out-a"), workers=1, cluster=sched)
    job_b = write_job(root / "b.json", name="nightly-b", inputs=[str(root / "in-b")], model=str(make_checkpoint(1)),
                      out=str(root / "out-b"), workers=1)
    for job, cron in ((job_a, "0 2 * * *"), (job_b, "30 4 * * *")):
        out = _check_output(segpipe("deploy", "--config", str(job), "--pool", POOL, "--cron", cron), env)
        facts.setdefault("deploy_out", []).append(out)
    procs.start("orchestrator", prefect("worker", "start", "--pool", POOL, "--type", "process", "--limit", "2",
                                        "--name", "orchestrator"), {**env, "PREFECT_WORKER_QUERY_SECONDS": "1"})
    run_a = trigger("segment-batch/nightly-a")
    wait_for(lambda: read_run(run_a).state.is_running(), 120, "batch A to start")
    t_running = time.monotonic()
    run_b = trigger("segment-batch/nightly-b")
    _orchestrator_dies_mid_b(facts, procs, root, run_b)
    facts["reference"] = _check_output(segpipe("batch", str(inputs), "--model", str(make_checkpoint(0)),
                                               "--out", str(root / "ref"), "--workers", "1", "--quiet"), env)
    wait_for(lambda: read_run(run_b).state.type.value == "CRASHED", 3 * ZOMBIE_AFTER_S, "the automation", every=1)
    facts["b_crashed_after_s"] = time.monotonic() - facts["b_killed_at"]
    facts["a_state_after_orchestrator_died"] = read_run(run_a).state.type.value
    procs.start("orchestrator2", prefect("worker", "start", "--pool", POOL, "--type", "process", "--limit", "2",
                                         "--name", "orchestrator2"), {**env, "PREFECT_WORKER_QUERY_SECONDS": "1"})
    run_b2 = trigger("segment-batch/nightly-b")  # re-triggered by hand, as an operator would
    wait_for(lambda: read_run(run_b2).state.is_final(), 300, "batch B's second run to finish")
    facts["b2"] = read_run(run_b2)
    facts["b_state_while_a_ran"] = read_run(run_a).state.type.value
    # The farm comes up after three zombie windows of the batch waiting for it.
    time.sleep(max(0.0, t_running + 3 * ZOMBIE_AFTER_S - time.monotonic()))
    facts["a_state_before_workers"] = read_run(run_a).state.type.value
    for i in range(2):
        procs.start(f"worker{i}", segpipe("worker", sched, "--gpus", "none", "--name", f"w{i}"), env)
    with Client(sched, timeout="60s") as client:
        client.wait_for_workers(2, timeout=120)
        facts["pids_before"] = set(client.run(os.getpid).values())
        addr, scene = wait_for(lambda: mid_scene(client, root / "out-a"), 240, "a scene in progress", every=0.05)
        pid = client.run(os.getpid, workers=[addr])[addr]
        procs.note_children()
        os.kill(pid, signal.SIGKILL)
        facts["killed"] = (scene, pid)
        wait_for(lambda: read_run(run_a).state.is_final(), 400, "batch A to finish")
        facts["worker_info"] = client.run(_worker_info)
    _collect(facts, run_a, run_b)


def _orchestrator_dies_mid_b(facts, procs, root, run_b) -> None:
    """SIGKILL the orchestrator worker and B's flow-run process (its machine died) once some of
    B's scenes are finished; A's run process, another child of that worker, is left alone."""
    import psutil

    records = lambda: sorted(p.parent.name for p in (root / "out-b").glob("*/record.json"))  # noqa: E731
    wait_for(lambda: 1 <= len(records()) < N_B, 240, "batch B half done", every=0.1)
    orchestrator = procs.started["orchestrator"]
    procs.note_children()
    runs = [p for p in psutil.Process(orchestrator.pid).children(recursive=True)
            if p.environ().get("PREFECT__FLOW_RUN_ID") == str(run_b)]
    os.kill(orchestrator.pid, signal.SIGKILL)
    for p in runs:
        os.kill(p.pid, signal.SIGKILL)
    facts["b_killed_at"], facts["b_done_before_kill"] = time.monotonic(), records()
    facts["b_run_pids"] = [p.pid for p in runs]


def _worker_info():
    from flows.farm import worker_info

    return worker_info()


def _check_output(cmd, env) -> str:
    import subprocess

    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=400)
    assert proc.returncode == 0, f"{cmd[3:]} failed:\n{proc.stdout[-2000:]}\n{proc.stderr[-4000:]}"
    return proc.stdout + proc.stderr


def _collect(facts, run_a, run_b) -> None:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import (ArtifactFilter, ArtifactFilterKey, FlowRunFilter, FlowRunFilterId,
                                                LogFilter, LogFilterFlowRunId)

    from flows.report import artifact_key

    with get_client(sync_client=True) as client:
        facts["a"], facts["b"] = client.read_flow_run(run_a), client.read_flow_run(run_b)
        facts["a_states"] = [s.type.value for s in client.read_flow_run_states(run_a)]
        facts["all_runs"] = client.read_flow_runs()
        facts["run_b"] = run_b
        facts["a_tasks"] = client.read_task_runs(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[run_a])))
        arts = client.read_artifacts(artifact_filter=ArtifactFilter(key=ArtifactFilterKey(
            any_=[artifact_key("run-summary", facts["root"] / "out-a")])))
        rows = json.loads(arts[0].data) if arts and isinstance(arts[0].data, str) else (arts[0].data if arts else [])
        facts["summary_rows"] = {r["scene"]: r for r in rows}
        facts["deployments"] = {d.name: d for d in client.read_deployments()}
        facts["a_logs"] = client.read_logs(LogFilter(flow_run_id=LogFilterFlowRunId(any_=[run_a])))


# -- the tests ----------------------------------------------------------------------------------
def test_every_scene_done_and_identical_to_a_local_batch(night):
    out, ref = night["root"] / "out-a", night["root"] / "ref"
    assert night["a"].state.is_completed(), night["a"].state.message
    message = batch_message(out, f"{N_SCENES} done, 0 skipped, 0 failed of {N_SCENES}")
    assert night["a"].state.message == message and message.startswith(f"{N_SCENES} QA ")
    rows = night["summary_rows"]
    assert sorted(rows) == [f"s{i:02d}" for i in range(N_SCENES)]
    assert {r["status"] for r in rows.values()} == {"done"}
    for i in range(N_SCENES):
        rec, ref_rec = (json.loads((d / f"s{i:02d}" / "record.json").read_text()) for d in (out, ref))
        assert rec["outputs"] == ref_rec["outputs"]
        for name in rec["outputs"].values():
            assert np.array_equal(read_mask(out / f"s{i:02d}" / name), read_mask(ref / f"s{i:02d}" / name)), name
    assert not list(out.glob("*/.*partial*"))  # the killed scene's temporary files are gone,
    assert list((out / ".segpipe" / "staging").iterdir()) == []  # and so is its staging folder


def test_the_killed_scene_was_redone_by_another_worker(night):
    scene, pid = night["killed"]  # it was being written by that process when it was killed
    assert pid in night["pids_before"]
    redone_by = night["summary_rows"][scene]["worker"]
    assert redone_by.rsplit(":", 1)[1].isdigit() and not redone_by.endswith(f":{pid}")


def test_each_worker_process_loaded_the_model_once(night):
    info = night["worker_info"]  # every worker process alive at the end (the nanny restarted the killed one)
    assert len(info) == 2
    killed = night["killed"][1]
    survivors = [i for i in info.values() if i["pid"] in night["pids_before"] and i["pid"] != killed]
    assert len(survivors) == 1 and survivors[0]["model_loads"] == 1
    assert all(i["model_loads"] <= 1 for i in info.values())
    used = {r["worker"] for r in night["summary_rows"].values()}
    assert len(used) <= 3  # scenes went to warm processes, not a process per scene


def test_scene_logs_from_the_workers_reach_their_task_runs(night):
    tasks = {t.name: t.id for t in night["a_tasks"]}
    logs = [(lg.name, lg.message, lg.task_run_id) for lg in night["a_logs"]]
    for name, task_run_id in tasks.items():
        assert any(n == "flows.scenes" and m.startswith(f"{name}: segmenting") and t == task_run_id
                   for n, m, t in logs), name
    loads = [m for n, m, _ in logs if n == "flows.scenes" and m.startswith("loading model")]
    workers = {r["worker"] for r in night["summary_rows"].values()}
    assert len(loads) == len(workers)  # one load per worker process that ran scenes, not one per scene


def test_no_live_run_was_marked_crashed_over_three_windows(night):
    a = night["a"]
    assert night["a_state_before_workers"] == "RUNNING"
    assert (a.end_time - a.start_time).total_seconds() > 3 * ZOMBIE_AFTER_S
    assert "CRASHED" not in night["a_states"]
    crashed = [r.id for r in night["all_runs"] if r.state.type.value == "CRASHED"]
    assert crashed == [night["run_b"]]  # only the run whose process was killed (next test)
    assert {t.state.type.value for t in night["a_tasks"] if t.name.startswith("s")} == {"COMPLETED"}


def test_two_jobs_side_by_side_each_with_its_own_deployment(night):
    deps = night["deployments"]
    assert {"nightly-a", "nightly-b"} <= set(deps)
    a, b = deps["nightly-a"], deps["nightly-b"]
    assert [s.schedule.cron for s in a.schedules] == ["0 2 * * *"]
    assert [s.schedule.cron for s in b.schedules] == ["30 4 * * *"]
    assert a.global_concurrency_limit.id != b.global_concurrency_limit.id
    assert a.global_concurrency_limit.limit == b.global_concurrency_limit.limit == 1
    assert night["b2"].state.is_completed(), night["b2"].state.message
    assert night["b_state_while_a_ran"] == "RUNNING"  # B ran (twice) and finished while A was running
    root = night["root"]
    ckpt_a = json.loads((root / "out-a" / "s00" / "record.json").read_text())["model"]["sha256"]
    ckpt_b = json.loads((root / "out-b" / "b0" / "record.json").read_text())["model"]["sha256"]
    assert ckpt_a != ckpt_b


def test_a_dead_orchestrator_is_recovered_by_re_triggering(night):
    """B's worker and run process were killed mid-batch: the automation marked the run Crashed
    (heartbeats stopped); A, whose run process had the same dead worker, went on; B re-run
    skipped what was finished and did the rest."""
    assert night["b_run_pids"], "B's flow-run process was not found"
    assert night["b"].state.type.value == "CRASHED" and "No heartbeat" in night["b"].state.message
    # Crashed one window after its last heartbeat, which came at most one heartbeat before the kill.
    assert ZOMBIE_AFTER_S - HEARTBEAT_S - 5 < night["b_crashed_after_s"] < 3 * ZOMBIE_AFTER_S
    assert night["a_state_after_orchestrator_died"] == "RUNNING"
    done_before = night["b_done_before_kill"]
    assert 1 <= len(done_before) < N_B
    summary = json.loads((night["root"] / "out-b" / "run_summary.json").read_text())
    rows = {r["scene"]: r["status"] for r in summary["rows"]}
    assert sorted(rows) == [f"b{i}" for i in range(N_B)]
    assert {s for s, status in rows.items() if status == "skipped"} == set(done_before)
    assert night["b2"].state.message == batch_message(night["root"] / "out-b", (
        f"{N_B - len(done_before)} done, {len(done_before)} skipped, 0 failed of {N_B}"))


def test_every_process_the_test_started_is_stopped(night):
    assert night["left_alive"] == []
    assert night["server_alive"] is False
