"""``segpipe notify``: tell someone when a job's night goes wrong (Failed, Crashed, QA failed).

Creates (or updates) a Prefect notification block and an automation on the server named by
PREFECT_API_URL; the server sends the run's summary by itself, also for a run whose
orchestrator died. See docs/operations.md ("Notifications").
"""

from __future__ import annotations

import argparse
import os

from .cli_batch import add_job_options, job_from_args


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("notify", help="send a job's night summary when it fails, crashes or fails QA",
                       description=__doc__.split("\n\n")[0])
    add_job_options(p)
    where = p.add_mutually_exclusive_group(required=True)
    where.add_argument("--webhook", metavar="URL", help="POST JSON {text, subject, body} to this URL")
    where.add_argument("--apprise", metavar="URL",
                       help="any Apprise URL: mailto://user:pass@host, slack://..., msteams://..., ntfy://...")
    p.set_defaults(func=_notify)


def _notify(args: argparse.Namespace) -> int:
    from pipeline.errors import ConfigError

    from .env import set_prefect_env
    from .notify import NOTIFY_ON, notify_on

    set_prefect_env()
    if not os.environ.get("PREFECT_API_URL"):
        raise ConfigError("segpipe notify needs the Prefect server the job runs on: set PREFECT_API_URL "
                          "(e.g. http://127.0.0.1:4200/api)")
    job = job_from_args(args)
    name = notify_on(job, webhook=args.webhook, apprise=args.apprise)
    print(f"automation {name!r}: job {job.job_name} runs ending {', '.join(NOTIFY_ON)} are sent to "
          f"{args.webhook or 'the Apprise URL'}")
    return 0
