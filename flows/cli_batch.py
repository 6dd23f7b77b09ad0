"""``segpipe batch``: segment many scenes/volumes with the batch flow, on this machine.

Runs Prefect's batch flow without any server to set up (Prefect starts a temporary one
for the run). Finished, unchanged scenes are skipped; a failed scene does not stop the
others. Exit code 0 when every scene is done or skipped, 3 when some failed (listed),
2 for a bad job (nothing was run).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from .cli_run import add_run_options

EXIT_SCENES_FAILED = 3


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
        epilog="Exit codes: 0 all scenes done or skipped, 2 bad job, 3 some scenes failed.")
    add_job_options(p)
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=_batch)


def _batch(args: argparse.Namespace) -> int:
    from .env import set_prefect_env
    from .inputs import plan_batch

    set_prefect_env()  # before prefect is imported
    job = job_from_args(args)
    plans = plan_batch(job)  # a bad job fails here, in one line, before Prefect starts
    from .batch_flow import SCENES_FAILED, progress_listener, segment_batch

    bar = _ScenesBar(len(plans), disable=args.quiet)
    try:
        with progress_listener(bar.update):
            state = segment_batch(job, return_state=True)
    finally:
        bar.close()
    print(f"segpipe batch: {state.name}: {state.message or ''}".rstrip(), file=sys.stderr)
    if state.is_completed():
        return 0
    return EXIT_SCENES_FAILED if SCENES_FAILED in (state.message or "") else 1


class _ScenesBar:
    """tqdm bar over scenes (terminal only; logs carry the same news otherwise)."""

    def __init__(self, total: int, disable: bool) -> None:
        self.bar = None
        if not disable and sys.stderr.isatty():
            from tqdm import tqdm

            self.bar = tqdm(total=total, unit="scene", dynamic_ncols=True)

    def update(self, done: int, total: int, outcome: Any) -> None:
        if self.bar is not None:
            self.bar.total = total
            self.bar.n = done
            self.bar.set_postfix_str(f"{outcome.name}: {outcome.status}", refresh=True)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
