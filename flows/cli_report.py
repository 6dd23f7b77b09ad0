"""``segpipe report RUN_DIR``: rebuild a run's report from the per-scene ``qa.json`` files."""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("report", help="rebuild run_report.html + run_summary.json of a run folder",
                       description="Rebuild RUN_DIR/run_report.html and run_summary.json from the scenes' qa.json.")
    p.add_argument("run_dir", type=Path, help="the run's output root (one folder per scene below it)")
    p.add_argument("--job", default="default", help="job name; drift compares runs of the same job")
    p.add_argument("--run-id", help="this run's id (default: the folder name)")
    p.add_argument("--history", type=Path, help="the job's history file (default RUN_DIR/.segpipe/history.jsonl)")
    p.add_argument("--thresholds", type=Path,
                   help="JSON file of QA thresholds: re-decide every scene's verdict with them")
    p.add_argument("--no-history-update", action="store_true", help="read the history but do not record this run")
    p.add_argument("--timezone", metavar="ZONE",
                   help="IANA zone the page shows times in, e.g. Europe/Berlin (default: this machine's)")
    p.set_defaults(func=_report)


def _report(args: argparse.Namespace) -> int:
    from pydantic import ValidationError

    from pipeline.errors import ConfigError, InputError
    from pipeline.qa import QAThresholds, load_run_summary, write_run_report

    if not args.run_dir.is_dir():
        raise InputError(f"{args.run_dir}: not a folder; expected a run's output root")
    thresholds = None
    if args.thresholds:
        try:
            thresholds = QAThresholds.model_validate(json.loads(args.thresholds.read_text()))
        except (OSError, ValueError, ValidationError) as exc:
            raise ConfigError(f"{args.thresholds}: not valid QA thresholds: {exc}") from exc
    tz = None
    if args.timezone:
        from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

        try:
            tz = ZoneInfo(args.timezone)
        except (ZoneInfoNotFoundError, ValueError):
            raise ConfigError(f"--timezone {args.timezone!r}: unknown zone; expected an IANA name like "
                              "Europe/Berlin") from None
    html, js = write_run_report(args.run_dir, run_id=args.run_id, job=args.job, history_path=args.history,
                                thresholds=thresholds, update_history=not args.no_history_update,
                                redecide=thresholds is not None, tz=tz)
    t = load_run_summary(js).totals
    print(f"{html}: {t.scenes} scene(s): {t.verdicts.get('pass', 0)} pass, {t.verdicts.get('warn', 0)} warn, "
          f"{t.verdicts.get('fail', 0)} fail, {t.failed} failed, {t.drifted} drift flag(s)")
    return 0
