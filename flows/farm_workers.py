"""Warm workers and the scheduler of a segpipe farm, built from Dask's own pieces.

``segpipe worker`` runs one ``distributed.Nanny`` per GPU of the machine (one for a
CPU-only machine). Each nanny starts a worker process that sees only its GPU
(``CUDA_VISIBLE_DEVICES``, set before torch is imported, as dask-cuda's
``LocalCUDACluster`` does), offers ``GPU=<scenes per GPU>`` resource units and as many
threads, and keeps its model between scenes. A worker process that dies is started again
by its nanny; the scheduler has already given its scene to another worker.

Dask's nanny sets ``OMP_NUM_THREADS=1`` in its workers by default (right for many small
numpy tasks, wrong for a U-Net on the CPU): each worker here gets the machine's cores
divided by the number of workers instead.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import socket
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from pipeline.errors import ConfigError

from .farm import RESOURCE

log = logging.getLogger(__name__)

DEFAULT_PORT = 8786  # Dask's own default scheduler port
THREAD_VARS = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")


@dataclass(frozen=True)
class WorkerSpec:
    """One worker process: its name, the GPU it sees (None: CPU only), scenes at once, CPU threads."""

    name: str
    gpu: str | None
    slots: int = 1
    threads: int = 1

    def nanny_options(self, memory_limit: int | str = "auto") -> dict[str, Any]:
        env = {v: str(self.threads) for v in THREAD_VARS}
        if self.gpu is not None:
            env["CUDA_VISIBLE_DEVICES"] = self.gpu
        return dict(name=self.name, nthreads=self.slots, resources={RESOURCE: self.slots}, env=env,
                    memory_limit=memory_limit, dashboard=False)


def visible_gpus() -> list[str]:
    """The GPUs this machine lets us use: ``CUDA_VISIBLE_DEVICES`` if set, else every device."""
    env = os.environ.get("CUDA_VISIBLE_DEVICES")
    if env is not None:
        return [g.strip() for g in env.split(",") if g.strip() and g.strip() != "-1"]
    try:
        import torch

        return [str(i) for i in range(torch.cuda.device_count())]
    except Exception:  # noqa: BLE001 - no CUDA build, no driver: a CPU machine
        return []


def worker_specs(gpus: str = "all", scenes_per_gpu: int = 1, prefix: str | None = None) -> list[WorkerSpec]:
    """The workers of this machine: one per GPU in ``gpus`` (``all``, ``none`` or ``0,2``).

    With no GPU (``none``, or ``all`` on a CPU-only machine) there is one worker for the
    machine, running ``scenes_per_gpu`` scenes at once.
    """
    if scenes_per_gpu < 1:
        raise ConfigError(f"--scenes-per-gpu must be at least 1, got {scenes_per_gpu}")
    prefix = prefix or socket.gethostname()
    if gpus == "all":
        ids = visible_gpus()
    elif gpus in ("none", "cpu", ""):
        ids = []
    else:
        ids = [g.strip() for g in gpus.split(",") if g.strip()]
        if not all(g.isdigit() or g.startswith(("GPU-", "MIG-")) for g in ids):
            raise ConfigError(f"--gpus {gpus!r}: expected 'all', 'none' or device ids like 0,1 (or GPU-/MIG- UUIDs)")
    cores = os.cpu_count() or 1
    if not ids:
        return [WorkerSpec(f"{prefix}-cpu", None, scenes_per_gpu, cores)]
    threads = max(1, cores // len(ids))
    return [WorkerSpec(f"{prefix}-gpu{g}", g, scenes_per_gpu, threads) for g in ids]


def memory_share(n_workers: int) -> int:
    """Bytes of RAM each worker may use before its nanny restarts it (the machine split evenly)."""
    import psutil

    return int(psutil.virtual_memory().total // max(n_workers, 1))


def run_workers(scheduler: str, specs: list[WorkerSpec]) -> int:
    """Run the nannies of ``specs`` against ``scheduler`` until SIGTERM/SIGINT; returns 0."""
    return asyncio.run(_serve_nannies(scheduler, specs))


async def _serve_nannies(scheduler: str, specs: list[WorkerSpec]) -> int:
    from distributed import Nanny

    share = memory_share(len(specs))
    nannies = [Nanny(scheduler, **s.nanny_options(share)) for s in specs]
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    stopping = asyncio.ensure_future(stop.wait())
    started = asyncio.ensure_future(asyncio.gather(*nannies))  # waits for the scheduler, however long
    await asyncio.wait([started, stopping], return_when=asyncio.FIRST_COMPLETED)
    if started.done() and not stop.is_set():
        started.result()
        for s, n in zip(specs, nannies):
            print(f"segpipe worker: {s.name} (GPU {s.gpu or 'none'}, {s.slots} scene(s) at once, pid {n.pid}) "
                  f"-> {scheduler}", file=sys.stderr, flush=True)
        finished = asyncio.ensure_future(asyncio.gather(*(n.finished() for n in nannies)))
        await asyncio.wait([finished, stopping], return_when=asyncio.FIRST_COMPLETED)
    started.cancel()
    await asyncio.gather(*(n.close(timeout=30) for n in nannies), return_exceptions=True)
    return 0


@contextlib.contextmanager
def local_cluster(gpus: str = "all", scenes_per_gpu: int = 1) -> Iterator[Any]:
    """A temporary cluster on this machine: a scheduler on 127.0.0.1 and :func:`worker_specs`'
    workers (``segpipe batch --cluster local``: 4 GPUs, 4 scenes at once)."""
    from distributed import Nanny, Scheduler, SpecCluster

    specs = worker_specs(gpus, scenes_per_gpu, prefix="local")
    share = memory_share(len(specs))
    workers = {s.name: {"cls": Nanny, "options": s.nanny_options(share)} for s in specs}
    scheduler = {"cls": Scheduler, "options": {"host": "127.0.0.1", "dashboard": False,
                                               "dashboard_address": "127.0.0.1:0"}}  # its HTTP port: any free one
    with SpecCluster(workers=workers, scheduler=scheduler, name="segpipe-local") as cluster:
        yield cluster


def run_scheduler(host: str = "127.0.0.1", port: int = DEFAULT_PORT) -> int:
    """A Dask scheduler until SIGTERM/SIGINT (``segpipe scheduler``)."""
    return asyncio.run(_serve_scheduler(host, port))


async def _serve_scheduler(host: str, port: int) -> int:
    from distributed import Scheduler

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    async with Scheduler(host=host, port=port, dashboard=False) as sched:
        print(f"segpipe scheduler: {sched.address}", file=sys.stderr, flush=True)
        await stop.wait()
    return 0
