"""The Prefect task around one scene: retries decided by ``pipeline.errors``, nothing else.

Tasks take and return paths and small dicts, never arrays or models: Prefect keeps
every task's inputs and result for the whole flow run.
"""

from __future__ import annotations

import logging
from typing import Any

from prefect import task
from prefect.tasks import exponential_backoff

from pipeline.errors import is_out_of_memory, is_transient
from pipeline.qa import QAThresholds

from .config import RunOptions
from .scenes import halved, process_scene

log = logging.getLogger(__name__)

RETRIES = 3
BACKOFF_S = 20.0  # 20 s, 40 s, 80 s (+ jitter): long enough for an NFS hiccup to pass

# Batch size to use on the next attempt of a scene after a device out-of-memory error,
# per input path. Retries run in the same process, so a module-level table is enough.
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
                       qa: dict[str, Any] | None = None, read_ahead: Any = None) -> dict[str, Any]:
    """Segment one input unless its record is current. Returns :class:`flows.scenes.SceneOutcome` as a dict.

    ``read_ahead``: the batch's read-ahead slot (same process only; never a flow parameter).
    """
    settings = RunOptions.model_validate(options)
    if input in _OOM_BATCH:
        settings = settings.model_copy(update={"batch_size": _OOM_BATCH[input]})
        log.warning("%s: retrying with batch size %d after running out of device memory", name, settings.batch_size)
    try:
        outcome = process_scene(input, model, out, settings,
                                qa_thresholds=QAThresholds.model_validate(qa) if qa else None, read_ahead=read_ahead)
    except BaseException as exc:
        if is_out_of_memory(exc):
            _OOM_BATCH[input] = halved(settings).batch_size
        raise
    _OOM_BATCH.pop(input, None)
    return outcome.to_dict()
