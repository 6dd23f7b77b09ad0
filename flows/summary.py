"""The last line a command prints: what was made, the QA verdict, and where to look.

A reviewer who reads only this line should know whether to open the report, and which one.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Any


def scene_line(record: dict[str, Any], scene_dir: Path) -> str:
    """``segpipe run``: 'x.tif: 96x96 -> out/x/ in 1.2 s (0.5 Mpix/s; bf16, auto: CPU has AVX512-BF16);
    QA warn: <reason> (+1 more): out/x/qa.html'."""
    t = record["timings"]
    inp = record["input"]
    size = "x".join(str(inp[k]) for k in ("width", "height", "depth") if k in inp)
    warn = f"; {len(record['warnings'])} warning(s)" if record.get("warnings") else ""
    f = record.get("facts", {})
    used = ", ".join(str(f[k]) for k in ("precision", "precision_reason") if f.get(k))  # bf16, auto: CPU has ...
    return (f"{Path(inp['path']).name}: {size} -> {scene_dir}/ in {t['total_s']:.1f} s "
            f"({t['mpix_per_s']:.2f} Mpix/s{'; ' + used if used else ''}); "
            f"{qa_phrase(record.get('qa'), scene_dir)}{warn}")


def qa_phrase(qa: dict[str, Any] | None, scene_dir: Path) -> str:
    """'QA pass: DIR/qa.html', 'QA fail: <first reason> (+2 more): DIR/qa.html', or why there is none."""
    if qa is None:
        return "QA off"
    if qa.get("verdict") is None:
        return f"QA not written ({qa.get('error', 'unknown error')})"
    reasons = list(qa.get("reasons") or [])
    why = f": {reasons[0]}" + (f" (+{len(reasons) - 1} more)" if len(reasons) > 1 else "") if reasons else ""
    html = qa.get("html")
    where = f": {scene_dir / html}" if html else ""
    return f"QA {qa['verdict']}{why}{where}"


def batch_lines(state_name: str, message: str | None, out_root: Path, since: datetime) -> list[str]:
    """``segpipe batch``: the flow's state and counts, the run's QA verdicts and report, then each failure.

    The run summary is read back from ``out_root`` only when this run wrote it (``since``):
    an older one would show another night's verdicts.
    """
    from pipeline.qa.schema import RUN_REPORT_HTML, RUN_SUMMARY_JSON

    head, *failures = (message or "").splitlines() or [""]
    head = head.rstrip(":")
    line = f"segpipe batch: {state_name}" + (f": {head}" if head else "")
    totals = _fresh_totals(out_root / RUN_SUMMARY_JSON, since)
    if totals is not None:
        v = totals.verdicts
        line += f"; QA {v.get('pass', 0)} pass, {v.get('warn', 0)} warn, {v.get('fail', 0)} fail"
    report = out_root / RUN_REPORT_HTML
    line += f"; report {report}" if totals is not None and report.is_file() else "; no run report written"
    return [line, *failures]


def _fresh_totals(path: Path, since: datetime) -> Any:
    from pipeline.qa.run_report import load_run_summary

    try:
        summary = load_run_summary(path)
        created = datetime.fromisoformat(summary.created)
    except (OSError, ValueError):
        return None
    return summary.totals if created >= since.replace(microsecond=0) else None
