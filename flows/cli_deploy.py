"""``segpipe serve`` and ``segpipe deploy``: run a batch job every night.

``serve`` needs nothing but this machine: it starts a Prefect server on 127.0.0.1
(SQLite) unless PREFECT_API_URL names one, and serves the batch deployment until
stopped. ``deploy`` registers the deployments on a process work pool of a running
server; workers on the GPU machines run them.
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


def register(sub: argparse._SubParsersAction) -> None:
    from .deploy import DEFAULT_POOL

    s = sub.add_parser("serve", help="serve the batch job nightly from this machine (local Prefect server)",
                       description=__doc__.split("\n\n")[1].replace("\n", " "))
    add_job_options(s)
    _schedule_options(s)
    s.add_argument("--port", type=int, default=4200, help="port of the local server and UI (default 4200)")
    s.add_argument("--limit", type=int, default=2,
                   help="flow runs at once in this process (batch + its scenes when fanned out; default 2)")
    s.set_defaults(func=_serve)

    d = sub.add_parser("deploy", help="register the batch job on a process work pool (GPU workers run it)",
                       description=__doc__.split("\n\n")[1].replace("\n", " "))
    add_job_options(d)
    _schedule_options(d)
    d.add_argument("--pool", default=DEFAULT_POOL, help=f"process work pool (created if missing; default {DEFAULT_POOL})")
    d.add_argument("--no-fan-out", action="store_true",
                   help="the batch runs all scenes on one worker instead of fanning out per scene")
    d.set_defaults(func=_deploy)


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
    names = deploy_to_pool(job, pool=args.pool, schedule=_schedule(args), fan_out=not args.no_fan_out)
    for n in names:
        print(f"deployed {n} on pool {args.pool}")
    return 0
