"""The Prefect task around one scene: retries decided by ``pipeline.errors``, nothing else.

Tasks take and return paths and small dicts, never arrays or models: Prefect keeps
every task's inputs and result for the whole flow run.
"""

from __future__ import annotations

import logging
from typing import Any

from prefect import task
from prefect.states import Completed
from prefect.tasks import exponential_backoff

from pipeline.errors import is_out_of_memory, is_transient
from pipeline.qa import QAThresholds

from .config import RunOptions
from .scenes import QA_FAILED, process_scene, retry_batch_on_oom

log = logging.getLogger(__name__)

RETRIES = 3
BACKOFF_S = 20.0  # 20 s, 40 s, 80 s (+ jitter): long enough for an NFS hiccup to pass

# Batch size to use on the next attempt of a scene after a device out-of-memory error,
# per input path (half of what it ran with where it ran: ``scenes.retry_batch_on_oom``).
# Retries run in the batch flow's process, so a module-level table is enough.
_OOM_BATCH: dict[str, int] = {}


def retry_if_transient(task: Any, task_run: Any, state: Any) -> bool:
    """Prefect's retry condition: only errors ``pipeline.errors.is_transient`` allows."""
    try:
        state.result()
    except BaseException as exc:  # noqa: BLE001 - classified, not handled
        return is_transient(exc)
    return False


@task(
    name="segment-scene",
    task_run_name="{name}",
    retries=RETRIES,
    retry_delay_seconds=exponential_backoff(backoff_factor=BACKOFF_S),
    retry_jitter_factor=0.2,
    retry_condition_fn=retry_if_transient,
    cache_policy=None,  # idempotency comes from record.json, not Prefect's cache
    persist_result=False,
)
def segment_scene_task(name: str, input: str, model: str, out: str, options: dict[str, Any],
                       qa: dict[str, Any] | None = None, cluster: str | None = None,
                       read_ahead: Any = None) -> dict[str, Any]:
    """Segment one input unless its record is current, here or on ``cluster``'s warm workers
    (``flows.farm``). Returns :class:`flows.scenes.SceneOutcome` as a dict.

    ``read_ahead``: the batch's read-ahead slot (same process only; never a flow parameter).
    """
    batch = _OOM_BATCH.get(input)
    if batch is not None:
        log.warning("%s: retrying with batch size %d after running out of device memory", name, batch)
    try:
        outcome = (_on_cluster(cluster, name, input, model, out, options, qa, batch) if cluster
                   else _here(input, model, out, options, qa, batch, read_ahead))
    except BaseException as exc:
        if is_out_of_memory(exc) and getattr(exc, "retry_batch_size", None):
            _OOM_BATCH[input] = exc.retry_batch_size
        raise
    _OOM_BATCH.pop(input, None)
    if outcome.get("qa_verdict") == "fail":  # complete, but QA says fail: the task says so too
        return Completed(name=QA_FAILED, message=f"{name}: outputs complete, QA verdict fail", data=outcome)
    return outcome


def _here(input: str, model: str, out: str, options: dict[str, Any], qa: dict[str, Any] | None,
          batch: int | None, read_ahead: Any) -> dict[str, Any]:
    settings = RunOptions.model_validate(options)
    if batch is not None:
        settings = settings.model_copy(update={"batch_size": batch})
    with retry_batch_on_oom(settings):
        return process_scene(input, model, out, settings, qa_thresholds=QAThresholds.model_validate(qa) if qa else None,
                             read_ahead=read_ahead).to_dict()


def _on_cluster(cluster: str, name: str, input: str, model: str, out: str, options: dict[str, Any],
                qa: dict[str, Any] | None, batch: int | None) -> dict[str, Any]:
    from prefect.context import TaskRunContext

    from .farm import run_on_cluster

    ctx = TaskRunContext.get()
    ids, key = {}, f"{name}-{batch or 'b'}"
    if ctx is not None:
        ids = {"flow_run_id": str(ctx.task_run.flow_run_id), "task_run_id": str(ctx.task_run.id)}
        key = f"{name}-{str(ctx.task_run.id)[:8]}-{ctx.task_run.run_count}"
    return run_on_cluster(cluster, key, input=input, model=model, out=out, options=options, qa=qa,
                          batch_size=batch, log_to=ids)
