"""Nightly scheduling: a served deployment (one machine) or a work-pool deployment (a farm).

* :func:`serve_nightly` - ``segpipe serve``: a local Prefect server on 127.0.0.1 (SQLite
  under ``PREFECT_HOME``) unless ``PREFECT_API_URL`` names one, plus this process serving
  the job's batch deployment. The ephemeral mode never runs schedules; this does.
* :func:`deploy_to_pool` - ``segpipe deploy``: the same deployment on a process work pool,
  run by an orchestrator worker; with ``cluster`` set in the job, its scenes go to the
  warm Dask workers (``flows.farm``), not to Prefect workers.

Each job is its own deployment of the ``segment-batch`` flow, named after the job
(``segment-batch/<job name>``), with its own schedule and ``concurrency_limit=1`` +
``CANCEL_NEW``: if last night's run of *that job* still runs, tonight's is cancelled
instead of overlapping it; other jobs are not affected, and deploying one never replaces
another. A batch run holds no slot its scenes need (scenes are task runs), so no limit of
a worker or of ``serve`` can deadlock it.
"""

from __future__ import annotations

import logging
import os
import re
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
from .env import HEARTBEAT_S, ZOMBIE_AFTER_S, child_env, flow_run_env
from .scenes import QA_FAILED

log = logging.getLogger(__name__)

DEFAULT_POOL = "segpipe"
TAG = "segpipe"  # on every segpipe deployment and so on its runs; the zombie automation matches it
DEFAULT_CRON = "0 2 * * *"
DEFAULT_TIMEZONE = "Europe/Berlin"
_NAME_BAD = re.compile(r"[^A-Za-z0-9_.-]+")


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


def deployment_name(job: JobConfig) -> str:
    """The job's deployment name: its name (default: the output folder's), as Prefect accepts it."""
    return _NAME_BAD.sub("-", job.job_name).strip("-") or "segpipe"


def batch_deployment(job: JobConfig, schedule: Schedule | None, *, pool: str | None = None) -> Any:
    """The job as a deployment of the batch flow (parameters: the whole job)."""
    from prefect.client.schemas.objects import ConcurrencyLimitConfig, ConcurrencyLimitStrategy
    from prefect.deployments.runner import EntrypointType
    from prefect.schedules import Cron

    from .batch_flow import job_tags, segment_batch

    if schedule is not None and job.timezone is None:  # the run report's times in the schedule's zone
        job = job.model_copy(update={"timezone": schedule.timezone})
    where = f"on {job.cluster}" if job.cluster else "in the batch's process"
    return segment_batch.to_deployment(
        name=deployment_name(job), parameters={"job": job.model_dump(mode="json")},
        schedules=[Cron(schedule.cron, timezone=schedule.timezone)] if schedule else None,
        concurrency_limit=ConcurrencyLimitConfig(limit=1, collision_strategy=ConcurrencyLimitStrategy.CANCEL_NEW),
        description=f"segpipe job {job.job_name}: {job.inputs or job.manifest} -> {job.out}, scenes {where}",
        tags=job_tags(job), work_pool_name=pool,
        # A process worker starts the run's process with these, whatever its own environment:
        # heartbeats at the rate the zombie automation expects, telemetry off, engine logs shipped;
        # and no pipe to the worker (the logs are in Prefect), so a batch run outlives a worker
        # that dies or restarts instead of dying on its next line of output.
        job_variables={"env": flow_run_env(), "stream_output": False} if pool else None,
        # Module entry point: any machine with segpipe installed can load the flow, wherever it lives.
        entrypoint_type=EntrypointType.MODULE_PATH,
    )


def deploy_to_pool(job: JobConfig, pool: str = DEFAULT_POOL, schedule: Schedule | None = Schedule()) -> str:
    """Create (or update) the work pool, the zombie automation and the job's deployment;
    returns the deployment's full name. Other jobs' deployments are left as they are."""
    ensure_process_pool(pool)
    ensure_zombie_automation()
    dep = batch_deployment(job, schedule, pool=pool)
    dep.apply(work_pool_name=pool)
    return dep.full_name


ZOMBIE_AUTOMATION = "segpipe: crash zombie flow runs"


def zombie_automation_spec() -> dict[str, Any]:
    """A proactive trigger: a running segpipe flow run whose heartbeats stop is marked Crashed.

    An orchestrator killed with -9 (or a machine that loses power) cannot report its flow
    run's end; without this the run stays Running forever and holds its deployment's only
    concurrency slot, so every later night of that job would be cancelled. The window is
    ``ZOMBIE_HEARTBEATS`` heartbeats (``flows.env``), the ratio Prefect's own defaults use,
    and only runs tagged ``segpipe`` are watched.
    """
    return {
        "name": ZOMBIE_AUTOMATION,
        "description": f"Mark a segpipe flow run Crashed when no heartbeat came for {ZOMBIE_AFTER_S} s "
                       f"(heartbeats every {HEARTBEAT_S} s)",
        "trigger": {
            "type": "event", "posture": "Proactive",
            "after": ["prefect.flow-run.heartbeat"],
            # every way a run ends, QA failed included (a Completed state by another name): an
            # ended run whose heartbeats stop must not be marked Crashed
            "expect": ["prefect.flow-run.heartbeat", "prefect.flow-run.Completed", "prefect.flow-run.Failed",
                       "prefect.flow-run.Cancelled", "prefect.flow-run.Crashed", f"prefect.flow-run.{QA_FAILED}"],
            "match": {"prefect.resource.id": ["prefect.flow-run.*"]},
            "match_related": {"prefect.resource.role": "tag", "prefect.resource.id": f"prefect.tag.{TAG}"},
            "for_each": ["prefect.resource.id"],
            "threshold": 1, "within": ZOMBIE_AFTER_S,
        },
        "actions": [{"type": "change-flow-run-state", "state": "CRASHED",
                     "message": f"No heartbeat for {ZOMBIE_AFTER_S} s: the process or its machine died"}],
    }


def ensure_zombie_automation() -> str:
    """Create the zombie automation, or bring an existing one of that name up to date;
    returns ``created``, ``updated`` or ``current``."""
    from prefect.automations import Automation

    wanted = Automation.model_validate(zombie_automation_spec())
    try:
        have = Automation.read(name=ZOMBIE_AUTOMATION)
    except ValueError:  # prefect raises ValueError("Automation ... not found")
        wanted.create()
        log.info("created automation %r", ZOMBIE_AUTOMATION)
        return "created"
    if have.trigger == wanted.trigger and have.actions == wanted.actions and have.enabled:
        return "current"
    wanted.id = have.id
    wanted.update()
    log.info("updated automation %r (window %d s)", ZOMBIE_AUTOMATION, ZOMBIE_AFTER_S)
    return "updated"


def ensure_process_pool(name: str) -> None:
    """Create a process work pool named ``name`` if there is none (its worker runs batch runs)."""
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
                description="segpipe batch runs (orchestrators); scenes run on the Dask workers"))
            log.info("created process work pool %s", name)
            return
        if pool.type != "process":
            raise ConfigError(f"work pool {name!r} is of type {pool.type!r}; segpipe deploys to a 'process' pool")


def serve_nightly(job: JobConfig, schedule: Schedule | None, limit: int = 1) -> None:
    """Serve the job's batch deployment from this process until interrupted.

    ``limit`` is how many batch runs this process runs at once; scenes are never flow runs,
    so 1 is enough. Stopping it pauses its schedule (Prefect's ``pause_on_shutdown``)
    until served again.
    """
    from prefect import serve

    ensure_zombie_automation()
    serve(batch_deployment(job, schedule), limit=limit, print_starting_message=True)


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
