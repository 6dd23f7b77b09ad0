"""Per-scene overhead of the farm against ``segpipe batch`` in one process, and of the candidates.

N small scenes (default 50) go through:

* ``local``        - the batch flow in this process (what ``segpipe batch`` does);
* ``farm``         - the batch flow with ``cluster`` set: Prefect task per scene here, the scene
                     on warm ``segpipe worker`` processes (Dask) - what segpipe ships;
* ``prefect-dask`` - prefect-dask's DaskTaskRunner on the same Dask workers (the Prefect task
                     engine runs on the worker);
* ``task-worker``  - Prefect task workers (``prefect.task_worker.serve``, tasks ``.delay()``ed,
                     results persisted to storage both sides read).

Each engine runs the same scenes twice (a warm-up into one folder, then the timed pass into
another), so the figures are for warm workers. Overhead per scene = (wall x workers - sum of
the scenes' own times) / N, where a scene's own time is ``process_scene``'s (skip check, model
from the cache, segmentation, outputs). ``--kill-after S`` adds a pass per engine in which
one worker process is killed with SIGKILL S seconds in, and reports what became of the scenes.

    PYTHONPATH=. python bench/bench_fanout.py --scenes 50 --workers 1 --engines local farm prefect-dask task-worker
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import pipeline  # noqa: E402,F401 - before torch: its CPU allocation settings


def make_inputs(root: Path, n: int, size: int) -> tuple[list[str], str]:
    import torch

    from data.synthetic import write_scene
    from models.checkpoint import save_checkpoint
    from models.unet import build_model
    from pipeline.spec import ModelSpec, Normalization

    (root / "in").mkdir(parents=True, exist_ok=True)
    torch.manual_seed(0)
    kw = {"decoder_channels": (16, 16, 16, 16, 16)}
    model = build_model("Unet", "resnet18", 1, 4, **kw).eval()
    spec = ModelSpec(in_channels=1, bands=(1,), class_names=("background", "water", "vegetation", "built"),
                     normalization=Normalization(kind="scale", factor=1e-4), tile=64, overlap=16)
    ckpt = save_checkpoint(model, spec, root / "tiny.safetensors", arch="Unet", encoder="resnet18", arch_kwargs=kw)
    paths = []
    for i in range(n):
        p = root / "in" / f"s{i:03d}.tif"
        write_scene(p, size, size, bands=1, seed=i)
        paths.append(str(p))
    return paths, str(ckpt)


class Farm:
    """A Dask scheduler and ``workers`` segpipe workers (CPU), started and stopped by PID."""

    def __init__(self, root: Path, workers: int) -> None:
        from flows.deploy import free_port

        self.port, self.n, self.root, self.procs = free_port(), workers, root, []
        self.address = f"tcp://127.0.0.1:{self.port}"

    def __enter__(self) -> Farm:
        from distributed import Client

        cli = [sys.executable, "-m", "flows.cli"]
        self._start([*cli, "scheduler", "--port", str(self.port)], "scheduler")
        for i in range(self.n):
            self._start([*cli, "worker", self.address, "--gpus", "none", "--name", f"bench{i}"], f"worker{i}")
        with Client(self.address, timeout="60s") as c:
            c.wait_for_workers(self.n, timeout=180)
        return self

    def _start(self, cmd: list[str], name: str) -> None:
        log = open(self.root / f"{name}.log", "ab")
        self.procs.append(subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
                                           env={**os.environ, "PYTHONPATH": str(REPO)}))

    def worker_pids(self) -> list[int]:
        from distributed import Client

        with Client(self.address, timeout="60s") as c:
            return sorted(c.run(os.getpid).values())

    def model_loads(self) -> list[int]:
        from distributed import Client

        from flows.farm import worker_info

        with Client(self.address, timeout="60s") as c:
            return sorted(i["model_loads"] for i in c.run(worker_info).values())

    def __exit__(self, *exc: object) -> None:
        for p in reversed(self.procs):
            p.terminate()
        for p in self.procs:
            try:
                p.wait(30)
            except subprocess.TimeoutExpired:
                p.kill()


class TaskWorkers(Farm):
    """``workers`` Prefect task-worker processes serving ``bench.fanout_tasks.delayed_scene``."""

    def __enter__(self) -> TaskWorkers:
        for i in range(self.n):
            self._start([sys.executable, "-m", "bench.fanout_tasks"], f"task-worker{i}")
        time.sleep(20)  # no readiness API: give them time to import and subscribe
        return self

    def worker_pids(self) -> list[int]:
        return [p.pid for p in self.procs]

    def model_loads(self) -> list[int]:
        return []


def run_engine(engine: str, inputs: list[str], model: str, out: Path, farm: Farm | None) -> tuple[float, list[dict]]:
    """Wall seconds and the scenes' outcome dicts of one pass."""
    t0 = time.perf_counter()
    if engine in ("local", "farm"):
        from flows.batch_flow import progress_listener, segment_batch
        from flows.config import JobConfig

        job = JobConfig(inputs=inputs, model=model, out=str(out), workers=1,
                        cluster=farm.address if engine == "farm" else None)
        seen: list[dict] = []
        with progress_listener(lambda d, t, o: seen.append(o.to_dict())):
            segment_batch(job, return_state=True)
        return time.perf_counter() - t0, seen
    from bench import fanout_tasks

    if engine == "prefect-dask":
        results = fanout_tasks.prefect_dask_flow(farm.address, inputs, model, str(out))
    else:
        results = fanout_tasks.task_worker_flow(inputs, model, str(out), timeout_s=240.0)
    return time.perf_counter() - t0, results


def kill_later(farm: Farm, after_s: float, killed: list[int]) -> threading.Thread:
    def go() -> None:
        time.sleep(after_s)
        pid = farm.worker_pids()[0]
        os.kill(pid, signal.SIGKILL)
        killed.append(pid)

    t = threading.Thread(target=go, daemon=True)
    t.start()
    return t


def measure(engine: str, args, inputs: list[str], model: str, root: Path) -> dict:
    workers = 1 if engine == "local" else args.workers
    ctx = {"local": None, "farm": Farm, "prefect-dask": Farm, "task-worker": TaskWorkers}[engine]
    with (ctx(root, workers) if ctx else _nothing()) as farm:
        warm_s, _ = run_engine(engine, inputs, model, root / f"{engine}-warm", farm)
        wall, outs = run_engine(engine, inputs, model, root / f"{engine}-timed", farm)
        loads = farm.model_loads() if farm else [1]
        row = _row(engine, workers, wall, warm_s, outs, loads)
        if args.kill_after and farm is not None:
            killed: list[int] = []
            kill_later(farm, args.kill_after, killed)
            k_wall, k_outs = run_engine(engine, inputs, model, root / f"{engine}-kill", farm)
            done = sum(o.get("status") in ("done", "skipped") for o in k_outs)
            row["after SIGKILL"] = f"{done}/{len(inputs)} done in {k_wall:.1f} s (killed pid {killed})"
    return row


class _nothing:
    def __enter__(self):
        return None

    def __exit__(self, *exc):
        return False


def _row(engine: str, workers: int, wall: float, warm_s: float, outs: list[dict], loads: list[int]) -> dict:
    own = sum(float(o.get("duration_s", 0.0)) for o in outs)
    n = max(len(outs), 1)
    return {"engine": engine, "workers": workers, "scenes": len(outs), "first pass s": round(warm_s, 1),
            "wall s": round(wall, 1), "scenes' own s": round(own, 1),
            "overhead s/scene": round((wall * workers - own) / n, 3), "model loads per worker": loads}


def process_per_scene_cost(model: str) -> float:
    """What the old fan-out paid per scene before segmenting: a process, torch, the model."""
    code = ("import time; t=time.perf_counter(); import pipeline, torch; from models.checkpoint import "
            f"load_checkpoint; load_checkpoint({model!r}); print(time.perf_counter()-t)")
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, env={**os.environ,
                                                                                         "PYTHONPATH": str(REPO)})
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--scenes", type=int, default=50)
    ap.add_argument("--size", type=int, default=128, help="scene width and height (pixels)")
    ap.add_argument("--workers", type=int, default=1, help="worker processes of the distributed engines")
    ap.add_argument("--engines", nargs="+", default=["local", "farm"],
                    choices=["local", "farm", "prefect-dask", "task-worker"])
    ap.add_argument("--kill-after", type=float, default=0.0, help="also SIGKILL a worker this many s into a pass")
    ap.add_argument("--workdir", type=Path)
    args = ap.parse_args()

    from flows.deploy import LocalServer
    from flows.env import set_prefect_env

    set_prefect_env()
    root = args.workdir or Path(tempfile.mkdtemp(prefix="bench-fanout-"))
    os.environ["PREFECT_LOCAL_STORAGE_PATH"] = str(root / "results")  # task workers' results, both sides
    inputs, model = make_inputs(root, args.scenes, args.size)
    with LocalServer(home=root / "prefect-home", log_path=root / "server.log") as server:
        os.environ["PREFECT_API_URL"] = server.api_url
        rows = []
        for e in args.engines:
            rows.append(measure(e, args, inputs, model, root))
            print("ROW " + ", ".join(f"{k}: {v}" for k, v in rows[-1].items()), flush=True)
    print(f"\n{args.scenes} scenes of {args.size}x{args.size}, {os.cpu_count()} cores, load {os.getloadavg()[0]:.1f}")
    for r in rows:
        print("  " + ", ".join(f"{k}: {v}" for k, v in r.items()))
    print(f"  a new process + torch import + model load (old fan-out, per scene): "
          f"{process_per_scene_cost(model):.2f} s")
    print("  target: farm overhead <= 0.2 s per scene")


if __name__ == "__main__":
    main()
