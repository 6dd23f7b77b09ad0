"""The batch flow: every scene of a job, each isolated, then one summary.

Two ways to spread the scenes:

* local (default): scenes run one after another as tasks in this flow run's process,
  with the model loaded once. This is what ``segpipe batch`` does, without a server.
* fan-out (``fan_out: true``): each scene becomes a flow run of the per-scene deployment
  (``run_deployment(..., timeout=0)``); workers on every GPU machine take them, and this
  flow waits for all of them. Outputs go to shared storage, so the summary reads the
  scenes' records from there.

Either way a failed scene never stops the others; the batch ends Failed, after all
scenes, listing each failed scene and why on one line.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable, Iterator
from datetime import datetime, timezone
from typing import Any

from prefect import flow, get_run_logger
from prefect.states import Completed, Failed

from pipeline.readers.nifti import ReadAhead
from pipeline.run.record import read_record

from .config import JobConfig
from .env import attach_engine_logs
from .inputs import ScenePlan, plan_batch
from .report import artifact_key, publish_run_report
from .scenes import SceneOutcome, one_line, output_paths, read_ahead_next
from .tasks import segment_scene_task

log = logging.getLogger(__name__)

BATCH_FLOW_NAME = "segment-batch"
SCENES_FAILED = "scene(s) failed"  # in the Failed state's message; the CLI's exit code 3 keys on it

# Callbacks told (done, total, outcome) after every scene; the CLI draws its progress bar
# from them. Process-local on purpose: never a flow parameter.
_LISTENERS: list[Callable[[int, int, SceneOutcome], None]] = []


@contextlib.contextmanager
def progress_listener(callback: Callable[[int, int, SceneOutcome], None]) -> Iterator[None]:
    _LISTENERS.append(callback)
    try:
        yield
    finally:
        _LISTENERS.remove(callback)


class _Progress:
    """A Prefect progress artifact plus the process-local listeners."""

    def __init__(self, total: int, run_root: str) -> None:
        from prefect.artifacts import create_progress_artifact

        self.total, self.done = total, 0
        self.artifact_id = create_progress_artifact(
            0.0, key=artifact_key("progress", run_root), description=f"scenes done of {total} ({run_root})")

    def scene_finished(self, outcome: SceneOutcome) -> None:
        from prefect.artifacts import update_progress_artifact

        self.done += 1
        update_progress_artifact(self.artifact_id, 100.0 * self.done / max(self.total, 1))
        get_run_logger().info("[%d/%d] %s: %s%s", self.done, self.total, outcome.name, outcome.status,
                              f" ({outcome.error})" if outcome.error else f" in {outcome.duration_s:.1f} s")
        for cb in list(_LISTENERS):
            cb(self.done, self.total, outcome)


@flow(name=BATCH_FLOW_NAME, persist_result=False, validate_parameters=True)
def segment_batch(job: JobConfig) -> Any:
    """Segment every input of ``job`` into ``job.out``; finished, unchanged scenes are skipped."""
    attach_engine_logs()
    logger = get_run_logger()
    plans = plan_batch(job)  # a bad job (missing input, name clash) fails here, before any work
    started = datetime.now(timezone.utc)
    logger.info("%d scene(s) -> %s (%s)", len(plans), job.out, "fan-out" if job.fan_out else "this process")
    progress = _Progress(len(plans), job.out)
    run = _run_fanned_out if job.fan_out else _run_here
    outcomes = run(plans, job, progress, started)
    c = publish_run_report(job.out, outcomes, run_id=_run_id(started), job=job.job_name, thresholds=job.qa)
    failed = [o for o in outcomes if o.status == "failed"]
    text = f"{c['done']} done, {c['skipped']} skipped, {c['failed']} failed of {c['total']}"
    if failed:
        lines = "\n".join(f"  {o.name}: {o.error}" for o in failed)
        return Failed(message=f"{len(failed)} of {len(outcomes)} {SCENES_FAILED} ({text}):\n{lines}", data=c)
    return Completed(message=text, data=c)


def _run_id(started: datetime) -> str:
    """Unique per run, sortable: the report's history keeps one entry per run id."""
    from prefect.runtime import flow_run

    return f"{started:%Y%m%dT%H%M%SZ}-{str(flow_run.get_id() or 'adhoc')[:8]}"


def _run_here(plans: list[ScenePlan], job: JobConfig, progress: _Progress, started: datetime) -> list[SceneOutcome]:
    outcomes = []
    ahead = ReadAhead()  # a GPU run decodes the next volume while this one is segmented
    try:
        for i, p in enumerate(plans):
            if i + 1 < len(plans):
                read_ahead_next(ahead, plans[i + 1].input, plans[i + 1].options)
            state = segment_scene_task(name=p.name, input=str(p.input), model=job.model, out=job.out,
                                       options=p.options.model_dump(), qa=job.qa.model_dump(mode="json"),
                                       read_ahead=ahead, return_state=True)
            outcome = _outcome_from_task(p, state)
            outcomes.append(outcome)
            progress.scene_finished(outcome)
    finally:
        ahead.close()
    return outcomes


def _outcome_from_task(p: ScenePlan, state: Any) -> SceneOutcome:
    try:
        return SceneOutcome(**state.result())
    except BaseException as exc:  # noqa: BLE001 - a failed scene is reported, never raised
        return SceneOutcome(p.name, str(p.input), str(p.scene_dir), "failed", error=one_line(exc))


# -- fan-out -------------------------------------------------------------------------------
def _run_fanned_out(plans: list[ScenePlan], job: JobConfig, progress: _Progress,
                    started: datetime) -> list[SceneOutcome]:
    from prefect.deployments import run_deployment
    from prefect.runtime import flow_run

    parent = flow_run.get_id() or "adhoc"
    runs = {}
    for p in plans:
        fr = run_deployment(
            job.scene_deployment, timeout=0, as_subflow=True, flow_run_name=p.name,
            parameters=dict(name=p.name, input=str(p.input), model=job.model, out=job.out,
                            options=p.options.model_dump(), qa=job.qa.model_dump(mode="json")),
            # A retried batch run re-attaches to the runs it already created instead of duplicating them.
            idempotency_key=f"{parent}-{p.name}",
        )
        runs[fr.id] = p
    get_run_logger().info("created %d scene flow run(s) of %s; waiting for workers", len(runs),
                          job.scene_deployment)
    finished = _wait(runs, job, progress, started)
    return [finished[fid] for fid in runs]


def _wait(runs: dict[Any, ScenePlan], job: JobConfig, progress: _Progress,
          started: datetime) -> dict[Any, SceneOutcome]:
    from prefect.client.orchestration import get_client

    deadline = time.monotonic() + job.max_wait_h * 3600
    done: dict[Any, SceneOutcome] = {}
    with get_client(sync_client=True) as client:
        while len(done) < len(runs):
            for fid, p in runs.items():
                if fid in done:
                    continue
                fr = client.read_flow_run(fid)
                if fr.state is not None and fr.state.is_final():
                    done[fid] = _outcome_from_run(p, fr, started)
                    progress.scene_finished(done[fid])
            if len(done) < len(runs):
                if time.monotonic() > deadline:
                    for fid, p in runs.items():
                        done.setdefault(fid, SceneOutcome(p.name, str(p.input), str(p.scene_dir), "failed",
                                                          error=f"not finished after {job.max_wait_h} h"))
                    break
                time.sleep(job.poll_s)
    return done


def _outcome_from_run(p: ScenePlan, fr: Any, started: datetime) -> SceneOutcome:
    """A finished scene flow run as an outcome; the record (shared storage) says done or skipped."""
    state = fr.state
    duration = float(fr.total_run_time.total_seconds()) if fr.total_run_time else 0.0
    if not state.is_completed():
        msg = " ".join((state.message or state.name).split())
        return SceneOutcome(p.name, str(p.input), str(p.scene_dir), "failed", duration,
                            error=f"{state.name}: {msg}"[:400])
    record = read_record(p.scene_dir)
    if record is None:
        return SceneOutcome(p.name, str(p.input), str(p.scene_dir), "failed", duration,
                            error=f"flow run completed but {p.scene_dir} has no record (is the output shared?)")
    finished = datetime.fromisoformat(record.get("finished") or started.isoformat())
    status = "done" if finished >= started else "skipped"
    outs = output_paths(p.scene_dir, record)
    return SceneOutcome(p.name, str(p.input), str(p.scene_dir), status, duration, outputs=outs)
