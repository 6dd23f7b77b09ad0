"""The batch flow: every scene of a job, each isolated, then one summary.

Two ways to spread the scenes, one Prefect task run per scene either way:

* here (default): scenes run one after another in this flow run's process, with the model
  loaded once. This is what ``segpipe batch`` does, without a server or a cluster.
* on a cluster (``cluster: tcp://head:8786``, or ``local`` for a temporary one on this
  machine): every scene's task is submitted at once; each hands its scene to the Dask
  scheduler (``flows.farm``) and waits, while warm workers, one per GPU, take scenes as
  they free up. Outputs go to shared storage; each outcome comes back from the worker.

Either way a failed scene never stops the others; the batch ends Failed, after all
scenes, listing each failed scene and why on one line.
"""

from __future__ import annotations

import contextlib
import logging
import re
from collections.abc import Callable, Iterator
from datetime import datetime, timezone
from typing import Any

from prefect import flow, get_run_logger
from prefect.states import Completed, Failed
from prefect.task_runners import ThreadPoolTaskRunner

from pipeline.readers.nifti import ReadAhead

from .config import JobConfig
from .deploy import TAG
from .env import attach_engine_logs
from .inputs import ScenePlan, plan_batch
from .preflight import preflight
from .report import artifact_key, publish_run_report
from .scenes import QA_FAILED, SceneOutcome, one_line, read_ahead_next
from .tasks import segment_scene_task

log = logging.getLogger(__name__)

BATCH_FLOW_NAME = "segment-batch"
SCENES_FAILED = "scene(s) failed"  # in the Failed state's message; the CLI's exit code 3 keys on it
# Scene tasks waiting on the cluster at once: each only waits on its Dask future, so this
# bounds the farm's size (scenes running at once), not this process's load.
MAX_SCENES_IN_FLIGHT = 512

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
                              f" ({outcome.error})" if outcome.error else f" in {outcome.duration_s:.1f} s"
                              + (f" on {outcome.worker}" if outcome.worker else ""))
        for cb in list(_LISTENERS):
            cb(self.done, self.total, outcome)


def run_name() -> str:
    """``<job>-<date>``, the date in the job's time zone: the UI tells jobs and nights apart."""
    from prefect.runtime import flow_run

    job = flow_run.parameters.get("job")
    job = job if isinstance(job, JobConfig) else JobConfig.model_validate(job) if job else None
    if job is None:
        return f"segpipe-{datetime.now():%Y-%m-%d}"
    return f"{job_slug(job)}-{datetime.now(zone(job.timezone)):%Y-%m-%d}"


def job_slug(job: JobConfig) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", job.job_name).strip("-") or "segpipe"


def zone(name: str | None) -> Any:
    """The IANA zone ``name``; None: this machine's."""
    from zoneinfo import ZoneInfo

    return ZoneInfo(name) if name else datetime.now().astimezone().tzinfo


def job_tags(job: JobConfig) -> list[str]:
    """Tags of a job's runs: segpipe's own (the zombie automation matches it) and the job's."""
    return [TAG, f"job:{job_slug(job)}"]


@flow(name=BATCH_FLOW_NAME, flow_run_name=run_name, persist_result=False, validate_parameters=True,
      task_runner=ThreadPoolTaskRunner(max_workers=MAX_SCENES_IN_FLIGHT))
def segment_batch(job: JobConfig) -> Any:
    """Segment every input of ``job`` into ``job.out``; finished, unchanged scenes are skipped."""
    attach_engine_logs()
    logger = get_run_logger()
    plans = plan_batch(job)  # a bad job (missing input, name clash) fails here, before any work
    preflight(job.model, job.out, plans, here=not job.cluster)  # and what would fail every scene
    started = datetime.now(timezone.utc)
    logger.info("%d scene(s) -> %s (%s)", len(plans), job.out,
                f"cluster {job.cluster}" if job.cluster else "this process")
    progress = _Progress(len(plans), job.out)
    outcomes = (_run_on_cluster if job.cluster else _run_here)(plans, job, progress)
    c = publish_run_report(job.out, outcomes, run_id=_run_id(started), job=job.job_name, thresholds=job.qa,
                           tz=job.timezone)
    return final_state(outcomes, c, job.qa_fail_exit)


def final_state(outcomes: list[SceneOutcome], c: dict[str, Any], qa_fail_loud: bool = True) -> Any:
    """The batch's state, in the run report's words: Failed when a scene failed; 'QA failed'
    (Completed by type) when every output is complete but a QA verdict is fail; else Completed."""
    failed = [o for o in outcomes if o.status == "failed"]
    text = f"{c['done']} done, {c['skipped']} skipped, {c['failed']} failed of {c['total']}"
    said = f"{c['verdicts']} ({text})" if c.get("verdicts") else text
    if failed:
        lines = "\n".join(f"  {o.name}: {o.error}" for o in failed)
        # No data: a runner resolves a Failed state's data into an exception (a dict cannot be one).
        return Failed(message=f"{len(failed)} of {len(outcomes)} {SCENES_FAILED}: {said}:\n{lines}")
    if c.get("qa_fail") and qa_fail_loud:
        lines = "\n".join(f"  {o.name}: QA fail" for o in outcomes if o.qa_verdict == "fail")
        return Completed(name=QA_FAILED, message=f"{said}:\n{lines}", data=c)
    return Completed(message=said, data=c)


def _run_id(started: datetime) -> str:
    """Unique per run, sortable: the report's history keeps one entry per run id."""
    from prefect.runtime import flow_run

    return f"{started:%Y%m%dT%H%M%SZ}-{str(flow_run.get_id() or 'adhoc')[:8]}"


def _run_here(plans: list[ScenePlan], job: JobConfig, progress: _Progress) -> list[SceneOutcome]:
    outcomes = []
    ahead = ReadAhead()  # a GPU run decodes the next volume while this one is segmented
    try:
        for i, p in enumerate(plans):
            if i + 1 < len(plans):
                read_ahead_next(ahead, plans[i + 1].input, plans[i + 1].options)
            state = segment_scene_task(read_ahead=ahead, return_state=True, **_scene_args(p, job))
            outcome = _outcome_from_task(p, state)
            outcomes.append(outcome)
            progress.scene_finished(outcome)
    finally:
        ahead.close()
    return outcomes


def _scene_args(p: ScenePlan, job: JobConfig) -> dict[str, Any]:
    return dict(name=p.name, input=str(p.input), model=job.model, out=job.out, options=p.options.model_dump(),
                qa=job.qa.model_dump(mode="json"))


def _outcome_from_task(p: ScenePlan, state: Any) -> SceneOutcome:
    try:
        return SceneOutcome(**state.result())
    except BaseException as exc:  # noqa: BLE001 - a failed scene is reported, never raised
        return SceneOutcome(p.name, str(p.input), str(p.scene_dir), "failed", error=one_line(exc))


def _outcome_from_future(p: ScenePlan, future: Any) -> SceneOutcome:
    try:
        return SceneOutcome(**future.result())
    except BaseException as exc:  # noqa: BLE001 - a failed scene is reported, never raised
        return SceneOutcome(p.name, str(p.input), str(p.scene_dir), "failed", error=one_line(exc))


def _run_on_cluster(plans: list[ScenePlan], job: JobConfig, progress: _Progress) -> list[SceneOutcome]:
    """Every scene's task at once; outcomes in plan order, progress in completion order."""
    from prefect.futures import as_completed

    from .farm import connected

    with connected(job.cluster) as client:
        get_run_logger().info("%d scene(s) to the cluster at %s (%d worker(s) now)", len(plans),
                              job.cluster, len(client.nthreads()))
        futures = {segment_scene_task.submit(cluster=job.cluster, **_scene_args(p, job)): p for p in plans}
        done: dict[str, SceneOutcome] = {}
        try:
            for fut in as_completed(list(futures), timeout=job.max_wait_h * 3600):
                p = futures[fut]
                done[p.name] = _outcome_from_future(p, fut)
                progress.scene_finished(done[p.name])
        except TimeoutError:
            get_run_logger().error("scenes still unfinished after %s h; the batch stops waiting", job.max_wait_h)
    return [done.get(p.name) or SceneOutcome(p.name, str(p.input), str(p.scene_dir), "failed",
                                             error=f"not finished after {job.max_wait_h} h") for p in plans]
