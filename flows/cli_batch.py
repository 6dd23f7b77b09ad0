"""``segpipe batch``: segment many scenes/volumes with the batch flow, on this machine.

Runs Prefect's batch flow without any server to set up (Prefect starts a temporary one
for the run). Finished, unchanged scenes are skipped; a failed scene does not stop the
others. Exit code 0 when every scene is done or skipped, 3 when some failed (listed),
4 when every output is complete but some QA verdict is fail, 2 for a bad job (nothing
was run).
"""

from __future__ import annotations

import argparse
import sys
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from .cli_run import add_run_options

EXIT_SCENES_FAILED = 3
EXIT_QA_FAILED = 4


def add_job_options(p: argparse.ArgumentParser) -> None:
    """Inputs, job file, and every ``segpipe run`` option; only options given on the command line
    override the job file (their defaults come from :class:`flows.config.JobConfig`)."""
    p.add_argument("inputs", nargs="*", metavar="INPUT",
                   help="raster/volume files, folders, globs (quoted) or manifests (.txt/.csv/.lst)")
    p.add_argument("--config", type=Path, help="job file (YAML or JSON) with any of these options")
    p.add_argument("--manifest", type=Path, help="one path per line, or CSV with a path column + option columns")
    p.add_argument("--glob", help="pattern for files of folder inputs (default: rasters and volumes)")
    p.add_argument("--cluster", metavar="ADDRESS",
                   help="run scenes on the warm workers of this Dask scheduler (tcp://head:8786), or 'local': "
                        "a temporary cluster on this machine, one worker per GPU (default: this process)")
    add_run_options(p, required=False)  # absent flags are None: they do not override the job file


def job_from_args(args: argparse.Namespace, **forced: Any) -> Any:
    from .config import JobConfig, load_job

    given = {k: v for k, v in vars(args).items() if k in JobConfig.model_fields and v is not None}
    given = {k: str(v) if isinstance(v, Path) else v for k, v in given.items()}
    if not given.get("inputs"):
        given.pop("inputs", None)
    return load_job(args.config, {**given, **forced})


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "batch", help="segment many inputs with the Prefect batch flow (no server needed)",
        description=__doc__.split("\n\n")[1].replace("\n", " "),
        epilog="Exit codes: 0 all scenes done or skipped, 2 bad job, 3 some scenes failed, 4 every output "
               "complete but some QA verdict fail (qa_fail_exit: false in the job turns it into 0).")
    add_job_options(p)
    p.set_defaults(func=_batch)


def _batch(args: argparse.Namespace) -> int:
    from .env import set_prefect_env
    from .inputs import plan_batch

    set_prefect_env()  # before prefect is imported
    job = job_from_args(args)
    plans = plan_batch(job)  # a bad job fails here, in one line, before Prefect starts
    from .preflight import preflight

    preflight(job.model, job.out, plans, here=not job.cluster)  # ... and what would fail every scene
    from prefect import tags

    from .batch_flow import SCENES_FAILED, job_tags, progress_listener, segment_batch

    from .progress import Bar
    from .summary import batch_lines

    since = datetime.now(timezone.utc)
    with Bar("scene", disable=args.quiet, leave=True) as bar:
        bar.update(0, len(plans))
        with progress_listener(lambda done, total, o: bar.update(done, total, f"{o.name}: {o.status}")):
            with tags(*job_tags(job)):  # what the UI filters a job's runs by
                state = segment_batch(job, return_state=True)
    for line in batch_lines(state.name, state.message, Path(job.out), since):
        print(line, file=sys.stderr)
    if state.is_completed():
        from .scenes import QA_FAILED

        return EXIT_QA_FAILED if state.name == QA_FAILED else 0
    return EXIT_SCENES_FAILED if SCENES_FAILED in (state.message or "") else 1
