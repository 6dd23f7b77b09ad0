"""Scenes on a Dask cluster of warm workers: the batch flow's side and the worker's side.

The batch flow stays a Prefect flow (schedule, UI, one task run per scene, retries from
``pipeline.errors``); only the segmentation moves. Each scene's Prefect task submits
:func:`scene_on_worker` to the Dask scheduler and waits for its result, so:

* a worker is a long-lived process (one per GPU, one per CPU-only machine) that keeps the
  model between scenes (``flows.scenes.get_model``): no interpreter, torch import or model
  load per scene;
* placement is Dask's: every worker offers ``GPU=n`` resource units and a scene asks for
  one (:data:`RESOURCE`), so a GPU runs one scene at a time unless its worker offers more;
* a worker that dies mid-scene (SIGKILL, OOM killer, power) is Dask's to handle: the
  scheduler sees the connection drop and runs the scene again on another worker. A scene
  that kills ``distributed.scheduler.allowed-failures`` + 1 workers (3 by default) ends as a
  ``KilledWorker`` failure instead of taking the whole farm down;
* the outcome (done / skipped / failed and why) is what the engine returned on the worker,
  carried back as the task's result; nothing is inferred from files or clocks.

Workers need no Prefect server to work; when ``PREFECT_API_URL`` is set in theirs, the
engine's log lines of a scene go to that scene's task run (:func:`_scene_logs`).
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import threading
from collections.abc import Iterator
from typing import Any

log = logging.getLogger(__name__)

RESOURCE = "GPU"  # the Dask resource a scene takes one unit of (CPU-only workers offer it too: one slot)
LOCAL = "local"  # JobConfig.cluster value: a temporary cluster on this machine, one worker per GPU

_CLIENTS: dict[str, Any] = {}
_CLIENTS_LOCK = threading.Lock()


# -- the batch flow's side --------------------------------------------------------------------
@contextlib.contextmanager
def connected(address: str) -> Iterator[Any]:
    """A Dask client for the batch's duration (``address`` ``local``: a temporary cluster here).

    The client is registered under ``address`` so the scene tasks, which run in the flow's
    thread pool, share it (``distributed.Client`` is thread-safe).
    """
    from distributed import Client

    with contextlib.ExitStack() as stack:
        if address == LOCAL:
            from .farm_workers import local_cluster

            cluster = stack.enter_context(local_cluster())
            client = stack.enter_context(Client(cluster))
        else:
            client = stack.enter_context(Client(address, timeout="60s"))
        with _CLIENTS_LOCK:
            _CLIENTS[address] = client
        try:
            yield client
        finally:
            with _CLIENTS_LOCK:
                _CLIENTS.pop(address, None)


def run_on_cluster(address: str, key: str, **scene: Any) -> dict[str, Any]:
    """Run one scene on the cluster and wait for it; returns the outcome dict (errors re-raised).

    ``key`` names the Dask task (shown on the dashboard); it is unique per attempt, so a
    Prefect retry is a new Dask task, never a cached result.
    """
    with _CLIENTS_LOCK:
        client = _CLIENTS.get(address)
    if client is None:  # a task run outside segment_batch (tests, a re-run task): connect for it
        with connected(address):
            return run_on_cluster(address, key, **scene)
    future = client.submit(scene_on_worker, key=key, pure=False, resources={RESOURCE: 1}, **scene)
    try:
        return future.result()
    finally:
        future.release()  # no recomputation of a finished scene if its worker dies later


# -- the worker's side ------------------------------------------------------------------------
def scene_on_worker(*, input: str, model: str, out: str, options: dict[str, Any],
                    qa: dict[str, Any] | None = None, batch_size: int | None = None,
                    log_to: dict[str, str] | None = None) -> dict[str, Any]:
    """One scene, in a warm worker: ``flows.scenes.process_scene`` with the job's options.

    ``batch_size`` overrides the options' (the halved size after a device out-of-memory
    error); ``log_to`` holds the Prefect flow and task run ids the engine's logs belong to.
    """
    from pipeline.options import RunOptions
    from pipeline.qa import QAThresholds

    from .scenes import process_scene, retry_batch_on_oom

    settings = RunOptions.model_validate(options)
    if batch_size is not None:
        settings = settings.model_copy(update={"batch_size": batch_size})
    with _scene_logs(log_to or {}), retry_batch_on_oom(settings):
        outcome = process_scene(input, model, out, settings,
                                qa_thresholds=QAThresholds.model_validate(qa) if qa else None)
    outcome.worker = worker_id()
    return outcome.to_dict()


def worker_id() -> str:
    """``host:pid`` of this process: which worker did a scene (reports, tests)."""
    return f"{socket.gethostname()}:{os.getpid()}"


class _SceneLogs(logging.Handler):
    """Hands the engine's records to Prefect's API handler, stamped with the running scene's run
    ids (which that handler reads); records logged while no scene runs are not sent."""

    def __init__(self, inner: logging.Handler) -> None:
        super().__init__()
        self.inner = inner
        self.ids: dict[str, str] = {}

    def emit(self, record: logging.LogRecord) -> None:
        ids = self.ids
        if not ids:
            return
        for k, v in ids.items():
            if not getattr(record, k, None):
                setattr(record, k, v)
        self.inner.handle(record)


_HANDLER: list[_SceneLogs] = []


@contextlib.contextmanager
def _scene_logs(ids: dict[str, str]) -> Iterator[None]:
    """While a scene runs, send the engine's log records to its Prefect task run.

    Only where the worker has ``PREFECT_API_URL``; otherwise the records stay in the worker's
    own log. Records of the engine's helper threads carry the ids too (the handler is the
    process's, not a thread's); a worker running several scenes at once may attribute a
    helper thread's line to the other scene. The scene's records are sent before its outcome
    returns: a worker killed later loses none of the scenes it finished.
    """
    if not ids or not os.environ.get("PREFECT_API_URL"):
        yield
        return
    handler = _scene_handler()
    previous, handler.ids = handler.ids, ids
    try:
        yield
    finally:
        handler.ids = previous
        handler.inner.flush()  # Prefect sends in batches every ~2 s; a SIGKILL would drop the last


def _scene_handler() -> _SceneLogs:
    """One handler per worker process, on the engine's loggers (INFO and up)."""
    if not _HANDLER:
        from prefect.logging.handlers import APILogHandler

        _HANDLER.append(_SceneLogs(APILogHandler()))
    from .env import ENGINE_LOGGERS

    for name in ENGINE_LOGGERS:
        lg = logging.getLogger(name)
        if _HANDLER[0] not in lg.handlers:
            lg.addHandler(_HANDLER[0])
        if lg.level == logging.NOTSET or lg.level > logging.INFO:
            lg.setLevel(logging.INFO)
    return _HANDLER[0]


def worker_info() -> dict[str, Any]:
    """What a worker says about itself (``client.run(worker_info)``): pid, device, model loads."""
    from .scenes import model_loads

    return {"pid": os.getpid(), "cuda_visible_devices": os.environ.get("CUDA_VISIBLE_DEVICES"),
            "model_loads": model_loads(), "omp_threads": os.environ.get("OMP_NUM_THREADS")}
