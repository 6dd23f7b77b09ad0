"""Nightly scheduling: served deployments (one machine) and work-pool deployments (GPU workers).

* :func:`serve_nightly` - ``segpipe serve``: a local Prefect server on 127.0.0.1 (SQLite
  under ``PREFECT_HOME``) unless ``PREFECT_API_URL`` names one, plus this process serving
  the batch and per-scene deployments. The ephemeral mode never runs schedules; this does.
* :func:`deploy_to_pool` - ``segpipe deploy``: the same two deployments on a process
  work pool; workers (one per GPU, ``--limit 1``) run them.

The batch deployment has ``concurrency_limit=1`` with ``CANCEL_NEW``: if last night's
batch is still running at 02:00, tonight's run is cancelled instead of overlapping it.
"""

from __future__ import annotations

import logging
import os
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pipeline.errors import ConfigError, SegpipeError

from .config import JobConfig
from .env import child_env

log = logging.getLogger(__name__)

BATCH_DEPLOYMENT = "segpipe-batch"
SCENE_DEPLOYMENT = "segpipe-scene"
DEFAULT_POOL = "segpipe-gpu"
BATCH_QUEUE = "batches"  # the batch run only waits: an orchestrator worker, not a GPU slot
SCENE_QUEUE = "scenes"  # GPU workers: one per GPU, --limit 1
DEFAULT_CRON = "0 2 * * *"
DEFAULT_TIMEZONE = "Europe/Berlin"


@dataclass(frozen=True)
class Schedule:
    cron: str = DEFAULT_CRON
    timezone: str = DEFAULT_TIMEZONE

    def __post_init__(self) -> None:
        from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

        if len(self.cron.split()) != 5:
            raise ConfigError(f"cron {self.cron!r} must have 5 fields (minute hour day month weekday)")
        try:
            ZoneInfo(self.timezone)
        except (ZoneInfoNotFoundError, ValueError):
            raise ConfigError(f"timezone {self.timezone!r} unknown; use an IANA name like Europe/Berlin") from None


def _deployments(job: JobConfig, schedule: Schedule | None, *, batch_queue: str | None = None,
                 scene_queue: str | None = None, pool: str | None = None) -> list[Any]:
    from prefect.client.schemas.objects import ConcurrencyLimitConfig, ConcurrencyLimitStrategy
    from prefect.deployments.runner import EntrypointType
    from prefect.schedules import Cron

    from .batch_flow import segment_batch
    from .scene_flow import segment_scene_flow

    # Module entry points: any machine with segpipe installed can load the flows, wherever it lives.
    common = dict(entrypoint_type=EntrypointType.MODULE_PATH, work_pool_name=pool)
    batch = segment_batch.to_deployment(
        name=BATCH_DEPLOYMENT, parameters={"job": job.model_dump(mode="json")},
        schedules=[Cron(schedule.cron, timezone=schedule.timezone)] if schedule else None,
        concurrency_limit=ConcurrencyLimitConfig(limit=1, collision_strategy=ConcurrencyLimitStrategy.CANCEL_NEW),
        description=f"segpipe batch {job.inputs or job.manifest} -> {job.out}", tags=["segpipe"],
        work_queue_name=batch_queue, **common,
    )
    scene = segment_scene_flow.to_deployment(
        name=SCENE_DEPLOYMENT, description="one scene of a segpipe batch (fan-out target)", tags=["segpipe"],
        work_queue_name=scene_queue, **common,
    )
    return [batch, scene]


def deploy_to_pool(job: JobConfig, pool: str = DEFAULT_POOL, schedule: Schedule | None = Schedule(),
                   fan_out: bool = True) -> list[str]:
    """Create (or update) the work pool and both deployments; returns the deployments' full names.

    With ``fan_out`` the batch deployment goes to the ``batches`` queue (a small orchestrator
    worker) and scenes to ``scenes`` (GPU workers); without, the batch runs all scenes itself
    on one GPU worker.
    """
    from .scene_flow import SCENE_FLOW_NAME

    ensure_process_pool(pool)
    ensure_zombie_automation()
    job = job.model_copy(update={"fan_out": fan_out, "scene_deployment": f"{SCENE_FLOW_NAME}/{SCENE_DEPLOYMENT}"})
    deps = _deployments(job, schedule, pool=pool, batch_queue=BATCH_QUEUE if fan_out else SCENE_QUEUE,
                        scene_queue=SCENE_QUEUE)
    names = []
    for d in deps:
        d.apply(work_pool_name=pool)
        names.append(d.full_name)
    return names


ZOMBIE_AUTOMATION = "segpipe: crash zombie flow runs"
HEARTBEAT_S = 30  # PREFECT_FLOWS_HEARTBEAT_FREQUENCY of flow-run processes (flows.env sets it)
ZOMBIE_AFTER_S = 3 * HEARTBEAT_S


def zombie_automation_spec() -> dict[str, Any]:
    """A proactive trigger: a running flow run whose heartbeats stop is marked Crashed.

    A worker killed with -9 (or a machine that loses power) cannot report its flow run's
    end; without this the run stays Running forever and the deployment's concurrency slot
    stays taken, so the next night's batch would be cancelled.
    """
    return {
        "name": ZOMBIE_AUTOMATION,
        "description": f"Mark a flow run Crashed when no heartbeat came for {ZOMBIE_AFTER_S} s",
        "trigger": {
            "type": "event", "posture": "Proactive",
            "after": ["prefect.flow-run.heartbeat"],
            "expect": ["prefect.flow-run.heartbeat", "prefect.flow-run.Completed", "prefect.flow-run.Failed",
                       "prefect.flow-run.Cancelled", "prefect.flow-run.Crashed"],
            "match": {"prefect.resource.id": ["prefect.flow-run.*"]},
            "for_each": ["prefect.resource.id"],
            "threshold": 1, "within": ZOMBIE_AFTER_S,
        },
        "actions": [{"type": "change-flow-run-state", "state": "CRASHED",
                     "message": f"No heartbeat for {ZOMBIE_AFTER_S} s: the worker or machine died"}],
    }


def ensure_zombie_automation() -> bool:
    """Create the zombie automation unless one of that name exists; True when created."""
    from prefect.automations import Automation

    try:
        Automation.read(name=ZOMBIE_AUTOMATION)
        return False
    except ValueError:  # prefect raises ValueError("Automation ... not found")
        pass
    Automation.model_validate(zombie_automation_spec()).create()
    log.info("created automation %r", ZOMBIE_AUTOMATION)
    return True


def ensure_process_pool(name: str) -> None:
    """Create a process work pool named ``name`` if there is none (workers run flows as subprocesses)."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.actions import WorkPoolCreate
    from prefect.exceptions import ObjectNotFound
    from prefect.workers.process import ProcessWorker

    with get_client(sync_client=True) as client:
        try:
            pool = client.read_work_pool(name)
        except ObjectNotFound:
            client.create_work_pool(WorkPoolCreate(
                name=name, type="process", base_job_template=ProcessWorker.get_default_base_job_template(),
                description="segpipe GPU machines: one worker per GPU (CUDA_VISIBLE_DEVICES=i, --limit 1)"))
            log.info("created process work pool %s", name)
            return
        if pool.type != "process":
            raise ConfigError(f"work pool {name!r} is of type {pool.type!r}; segpipe deploys to a 'process' pool")


def serve_nightly(job: JobConfig, schedule: Schedule, limit: int = 1) -> None:
    """Serve the batch and per-scene deployments from this process until interrupted.

    ``limit`` is how many flow runs this process runs at once (the batch itself counts).
    Stopping it pauses its schedules (Prefect's ``pause_on_shutdown``) until served again.
    """
    from prefect import serve

    from .scene_flow import SCENE_FLOW_NAME

    job = job.model_copy(update={"scene_deployment": f"{SCENE_FLOW_NAME}/{SCENE_DEPLOYMENT}"})
    ensure_zombie_automation()
    serve(*_deployments(job, schedule), limit=limit, print_starting_message=True)


# -- a local server --------------------------------------------------------------------------
def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


class LocalServer:
    """``prefect server start`` on 127.0.0.1 in a child process (SQLite under ``PREFECT_HOME``).

    Use as a context manager; the server is stopped on exit. ``api_url`` is what clients
    and workers need as ``PREFECT_API_URL``.
    """

    def __init__(self, port: int | None = None, home: str | Path | None = None, startup_timeout_s: float = 180,
                 log_path: str | Path | None = None) -> None:
        self.port = port or free_port()
        self.home = Path(home) if home else None
        self.timeout = startup_timeout_s
        self.log_path = Path(log_path) if log_path else None
        self.api_url = f"http://127.0.0.1:{self.port}/api"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> LocalServer:
        extra = {"PREFECT_HOME": str(self.home)} if self.home else {}
        env = child_env(**extra, PREFECT_UI_ENABLED=os.environ.get("PREFECT_UI_ENABLED", "true"))
        env.pop("PREFECT_API_URL", None)
        out = open(self.log_path, "ab") if self.log_path else subprocess.DEVNULL
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "prefect", "server", "start", "--host", "127.0.0.1", "--port", str(self.port)],
            env=env, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True)
        self._wait_healthy()
        log.info("Prefect server at %s (UI http://127.0.0.1:%d)", self.api_url, self.port)
        return self

    def _wait_healthy(self) -> None:
        deadline = time.monotonic() + self.timeout
        while time.monotonic() < deadline:
            if self.proc is not None and self.proc.poll() is not None:
                raise SegpipeError(f"prefect server exited with code {self.proc.returncode} while starting"
                                   + (f"; see {self.log_path}" if self.log_path else ""))
            try:
                with urllib.request.urlopen(f"{self.api_url}/health", timeout=2) as r:
                    if r.status == 200:
                        return
            except OSError:
                pass
            time.sleep(0.5)
        self.stop()
        raise SegpipeError(f"prefect server on port {self.port} not healthy after {self.timeout:.0f} s")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    def __enter__(self) -> LocalServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
