"""The one-scene work of ``bench_fanout.py``'s candidate engines, importable by their workers.

Each candidate runs the same thing per scene, ``flows.scenes.process_scene`` with the model
cached per process, so only the engine around it differs.
"""

from __future__ import annotations

from typing import Any

from prefect import flow, task


def _scene(input: str, model: str, out: str) -> dict[str, Any]:
    from flows.farm import worker_id
    from flows.scenes import process_scene
    from pipeline.options import RunOptions

    outcome = process_scene(input, model, out, RunOptions(workers=1))
    outcome.worker = worker_id()
    return outcome.to_dict()


@task(name="bench-scene", cache_policy=None, persist_result=False)
def dask_scene(input: str, model: str, out: str) -> dict[str, Any]:
    """Run on a Dask worker by prefect-dask's DaskTaskRunner (the Prefect task engine runs there)."""
    return _scene(input, model, out)


@flow(name="bench-prefect-dask", persist_result=False)
def prefect_dask_flow(address: str, inputs: list[str], model: str, out: str) -> list[dict[str, Any]]:
    import dask
    from prefect_dask import DaskTaskRunner

    with DaskTaskRunner(address=address) as runner:
        with dask.annotate(resources={"GPU": 1}):
            futures = [runner.submit(dask_scene, parameters={"input": i, "model": model, "out": out})
                       for i in inputs]
        results = []
        for f in futures:
            try:
                results.append(f.result())
            except Exception as exc:  # noqa: BLE001 - a lost scene is what is measured
                results.append({"status": "lost", "error": type(exc).__name__})
        return results


@task(name="bench-task-worker-scene", cache_policy=None, persist_result=True)
def delayed_scene(input: str, model: str, out: str) -> dict[str, Any]:
    """Served by ``prefect.task_worker.serve`` (results persisted to PREFECT_LOCAL_STORAGE_PATH)."""
    return _scene(input, model, out)


@flow(name="bench-task-workers", persist_result=False)
def task_worker_flow(inputs: list[str], model: str, out: str, timeout_s: float) -> list[Any]:
    import time

    futures = [delayed_scene.delay(i, model, out) for i in inputs]
    deadline = time.monotonic() + timeout_s  # for the whole pass: a lost scene never finishes
    results: list[Any] = []
    for f in futures:
        try:
            results.append(f.result(timeout=max(0.1, deadline - time.monotonic())))
        except Exception as exc:  # noqa: BLE001 - a lost scene is what is measured
            results.append({"status": "lost", "error": type(exc).__name__})
    return results


def serve_task_workers() -> None:
    from prefect.task_worker import serve

    serve(delayed_scene, limit=1)  # one scene at a time per worker, as a GPU worker would


if __name__ == "__main__":
    serve_task_workers()
