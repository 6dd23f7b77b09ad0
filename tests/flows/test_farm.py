"""The farm's pieces without a cluster: worker placement, outcomes, OOM hand-back, log stamping."""

from __future__ import annotations

import logging
import pickle

import pytest

from flows import farm, farm_workers
from flows.config import JobConfig
from flows.farm_workers import worker_specs
from pipeline.errors import ConfigError


def test_one_worker_per_gpu_each_pinned_to_it(monkeypatch):
    monkeypatch.setattr(farm_workers.os, "cpu_count", lambda: 16)
    specs = worker_specs("0,1,3,2", prefix="gpu-a")
    assert [s.name for s in specs] == ["gpu-a-gpu0", "gpu-a-gpu1", "gpu-a-gpu3", "gpu-a-gpu2"]
    opts = specs[2].nanny_options(memory_limit=1 << 30)
    assert opts["env"]["CUDA_VISIBLE_DEVICES"] == "3"
    assert opts["resources"] == {"GPU": 1} and opts["nthreads"] == 1  # one scene at a time on that GPU
    assert opts["env"]["OMP_NUM_THREADS"] == "4"  # not Dask's default of 1: the cores split among the GPUs
    assert opts["memory_limit"] == 1 << 30


def test_scenes_per_gpu_and_cpu_only_machines(monkeypatch):
    monkeypatch.setattr(farm_workers.os, "cpu_count", lambda: 8)
    two = worker_specs("0", scenes_per_gpu=2, prefix="h")[0].nanny_options()
    assert two["resources"] == {"GPU": 2} and two["nthreads"] == 2
    (cpu,) = worker_specs("none", prefix="h")
    assert cpu.gpu is None and "CUDA_VISIBLE_DEVICES" not in cpu.nanny_options()["env"]
    assert cpu.nanny_options()["env"]["OMP_NUM_THREADS"] == "8"  # one worker has the whole machine


def test_all_gpus_follow_cuda_visible_devices(monkeypatch):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "2,3")
    assert [s.gpu for s in worker_specs("all", prefix="h")] == ["2", "3"]
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    assert [s.gpu for s in worker_specs("all", prefix="h")] == [None]  # no GPU: one CPU worker


@pytest.mark.parametrize("gpus, scenes", [("zero", 1), ("0", 0)])
def test_bad_worker_options_are_refused(gpus, scenes):
    with pytest.raises(ConfigError):
        worker_specs(gpus, scenes_per_gpu=scenes)


def test_cluster_address_is_validated():
    assert JobConfig(model="/m", out="/o", cluster="tcp://head:8786").cluster == "tcp://head:8786"
    assert JobConfig(model="/m", out="/o", cluster="local").cluster == "local"
    with pytest.raises(ValueError, match="cluster"):
        JobConfig(model="/m", out="/o", cluster="head:8786")


def test_scene_on_worker_returns_the_engines_outcome(make_checkpoint, tmp_path):
    from data.synthetic import write_scene

    write_scene(tmp_path / "a.tif", 96, 96, bands=1, seed=3)
    args = dict(input=str(tmp_path / "a.tif"), model=str(make_checkpoint(0)), out=str(tmp_path / "out"),
                options={"workers": 1})
    first = farm.scene_on_worker(**args)
    again = farm.scene_on_worker(**args)
    assert (first["status"], again["status"]) == ("done", "skipped")
    assert first["worker"] == farm.worker_id() and first["outputs"]["mask"].endswith("a_mask.tif")


def test_out_of_memory_on_a_worker_carries_the_halved_batch_back(monkeypatch, tmp_path):
    import torch

    import flows.scenes as scenes

    def oom(*a, **k):
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")

    monkeypatch.setattr(scenes, "process_scene", oom)
    with pytest.raises(torch.OutOfMemoryError) as info:
        farm.scene_on_worker(input="/in/a.tif", model="/m", out=str(tmp_path), options={"device": "cpu"},
                             batch_size=6)
    back = pickle.loads(pickle.dumps(info.value))  # as Dask sends it to the batch flow
    assert back.retry_batch_size == 3


def test_scene_logs_carry_the_run_ids(monkeypatch):
    seen = []

    class Capture(logging.Handler):  # Prefect's API handler, which sends what it holds on flush
        def emit(self, record):
            seen.append((record.getMessage(), getattr(record, "task_run_id", None)))

        def flush(self):
            seen.append(("flushed", None))

    monkeypatch.setenv("PREFECT_API_URL", "http://127.0.0.1:9/api")
    handler = farm._SceneLogs(Capture())
    monkeypatch.setattr(farm, "_HANDLER", [handler])
    try:
        with farm._scene_logs({"flow_run_id": "f1", "task_run_id": "t1"}):
            logging.getLogger("pipeline.scene").info("tiles done")
        logging.getLogger("pipeline.scene").info("after the scene")
    finally:
        for name in ("pipeline", "models", "flows"):
            logging.getLogger(name).removeHandler(handler)
    assert ("tiles done", "t1") in seen and ("after the scene", "t1") not in seen
    # sent before the scene's outcome returns (a worker SIGKILLed later must not lose them)
    assert seen.index(("flushed", None)) == seen.index(("tiles done", "t1")) + 1


def test_a_scene_out_of_memory_on_the_cluster_is_retried_with_half_the_batch(prefect_server, monkeypatch):
    """The worker decides the halved size (its device's batch); the batch's retry sends it back."""
    import torch
    from prefect import flow

    import flows.farm as farm_mod
    import flows.tasks as tasks

    sizes = []

    def fake(address, key, **scene):
        sizes.append(scene["batch_size"])
        if len(sizes) == 1:
            exc = torch.OutOfMemoryError("CUDA out of memory")
            exc.retry_batch_size = 4  # a GPU worker's default of 8, halved there
            raise exc
        return {"name": "s", "input": scene["input"], "scene_dir": "/out/s", "status": "done", "worker": "gpu-a:1"}

    monkeypatch.setattr(farm_mod, "run_on_cluster", fake)
    quick = tasks.segment_scene_task.with_options(retry_delay_seconds=0, retry_jitter_factor=None)

    @flow
    def one():
        return quick(name="s", input="/in/s.tif", model="/m", out="/out", options={}, cluster="tcp://h:8786")

    assert one()["worker"] == "gpu-a:1"
    assert sizes == [None, 4]
    assert not tasks._OOM_BATCH
