"""``segpipe serve``, ``deploy``, ``scheduler`` and ``worker``: nightly jobs and the farm.

``serve`` needs nothing but this machine: it starts a Prefect server on 127.0.0.1
(SQLite) unless PREFECT_API_URL names one, and serves the job's batch deployment until
stopped. ``deploy`` registers a job's deployment on a process work pool of a running
server (an orchestrator worker runs it). ``scheduler`` and ``worker`` are the Dask farm
the batch sends scenes to when the job names a ``cluster``: one scheduler, and on every
machine one warm worker process per GPU.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys

from .cli_batch import add_job_options, job_from_args


def _schedule_options(p: argparse.ArgumentParser) -> None:
    from .deploy import DEFAULT_CRON, DEFAULT_TIMEZONE

    p.add_argument("--cron", default=DEFAULT_CRON, help=f"when to run (default {DEFAULT_CRON!r}: 02:00 daily)")
    p.add_argument("--timezone", default=DEFAULT_TIMEZONE, help=f"IANA time zone of --cron (default {DEFAULT_TIMEZONE})")
    p.add_argument("--no-schedule", action="store_true", help="no schedule: runs only when triggered")


def _description() -> str:
    return __doc__.split("\n\n")[1].replace("\n", " ")


def register(sub: argparse._SubParsersAction) -> None:
    from .deploy import DEFAULT_POOL
    from .farm_workers import DEFAULT_PORT

    s = sub.add_parser("serve", help="serve a batch job nightly from this machine (local Prefect server)",
                       description=_description())
    add_job_options(s)
    _schedule_options(s)
    s.add_argument("--port", type=int, default=4200, help="port of the local server and UI (default 4200)")
    s.add_argument("--limit", type=int, default=1,
                   help="batch runs at once in this process (default 1; scenes never take a slot)")
    s.set_defaults(func=_serve)

    d = sub.add_parser("deploy", help="register a batch job on a process work pool (an orchestrator worker runs it)",
                       description=_description())
    add_job_options(d)
    _schedule_options(d)
    d.add_argument("--pool", default=DEFAULT_POOL, help=f"process work pool (created if missing; default {DEFAULT_POOL})")
    d.set_defaults(func=_deploy)

    c = sub.add_parser("scheduler", help="run the farm's Dask scheduler (workers and batches connect to it)",
                       description=_description())
    c.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1; 0.0.0.0: all)")
    c.add_argument("--port", type=int, default=DEFAULT_PORT, help=f"port (default {DEFAULT_PORT})")
    c.set_defaults(func=_scheduler)

    w = sub.add_parser("worker", help="run this machine's warm workers: one process per GPU, model kept",
                       description=_description())
    w.add_argument("scheduler", help="the farm's scheduler, e.g. tcp://head:8786")
    w.add_argument("--gpus", default="all",
                   help="'all' (default: every visible GPU, or one CPU worker without), 'none', or ids: 0,1")
    w.add_argument("--scenes-per-gpu", type=int, default=1, help="scenes at once on each GPU (default 1)")
    w.add_argument("--name", help="worker name prefix (default: the host name)")
    w.set_defaults(func=_worker)


def _schedule(args: argparse.Namespace):
    from .deploy import Schedule

    return None if args.no_schedule else Schedule(args.cron, args.timezone)


def _serve(args: argparse.Namespace) -> int:
    from .deploy import LocalServer
    from .env import set_prefect_env
    from .inputs import plan_batch

    set_prefect_env()
    job = job_from_args(args)
    plan_batch(job)  # refuse a broken job now, not at 02:00
    schedule = _schedule(args)
    # systemd and `timeout` stop services with SIGTERM: exit through the finally blocks, so
    # the local server is stopped with us instead of being orphaned.
    signal.signal(signal.SIGTERM, _exit_on_sigterm)
    if os.environ.get("PREFECT_API_URL"):
        return _serve_on(job, schedule, args.limit)
    with LocalServer(port=args.port) as server:
        os.environ["PREFECT_API_URL"] = server.api_url  # before prefect reads its settings
        print(f"segpipe serve: Prefect UI at http://127.0.0.1:{args.port}", file=sys.stderr)
        return _serve_on(job, schedule, args.limit)


def _exit_on_sigterm(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def _serve_on(job, schedule, limit: int) -> int:
    from .deploy import serve_nightly

    serve_nightly(job, schedule, limit=limit)
    return 0


def _deploy(args: argparse.Namespace) -> int:
    from pipeline.errors import ConfigError

    from .deploy import deploy_to_pool
    from .env import set_prefect_env

    set_prefect_env()
    if not os.environ.get("PREFECT_API_URL"):
        raise ConfigError("segpipe deploy needs a Prefect server: set PREFECT_API_URL "
                          "(e.g. http://gpu-head:4200/api); for one machine use `segpipe serve`")
    job = job_from_args(args)
    name = deploy_to_pool(job, pool=args.pool, schedule=_schedule(args))
    print(f"deployed {name} on pool {args.pool}" + (f", scenes on {job.cluster}" if job.cluster else ""))
    return 0


def _scheduler(args: argparse.Namespace) -> int:
    from .farm_workers import run_scheduler

    return run_scheduler(args.host, args.port)


def _worker(args: argparse.Namespace) -> int:
    from .env import set_prefect_env
    from .farm_workers import run_workers, worker_specs

    set_prefect_env()  # the workers' engine logs go to Prefect when PREFECT_API_URL is set
    return run_workers(args.scheduler, worker_specs(args.gpus, args.scenes_per_gpu, args.name))
