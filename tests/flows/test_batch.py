"""The batch flow in this process (ephemeral-style, against the session's test server)."""

from __future__ import annotations

import json
from pathlib import Path


from flows.batch_flow import progress_listener, segment_batch
from flows.config import JobConfig
from pipeline.run.record import read_record

from .conftest import volume_path_available


def run_batch(**fields):
    plain = {k: [str(x) for x in v] if isinstance(v, list) else str(v) if isinstance(v, Path) else v
             for k, v in fields.items()}
    job = JobConfig(**plain)
    seen = []
    with progress_listener(lambda done, total, o: seen.append((done, total, o.name, o.status))):
        state = segment_batch(job, return_state=True)
    return state, seen


def engine_logs(state) -> list[str]:
    """Messages the flow run's logs hold from the engine's loggers (not Prefect's own)."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import LogFilter, LogFilterFlowRunId
    from prefect.logging.handlers import APILogHandler

    APILogHandler().flush()
    with get_client(sync_client=True) as client:
        logs = client.read_logs(LogFilter(flow_run_id=LogFilterFlowRunId(any_=[state.state_details.flow_run_id])))
    return [log.message for log in logs if log.name.startswith(("pipeline", "models", "flows"))]


def record_mtimes(out: Path) -> dict[str, int]:
    return {p.parent.name: p.stat().st_mtime_ns for p in out.glob("*/record.json")}


def test_batch_isolates_a_corrupt_scene_and_reruns_skip(prefect_server, make_checkpoint, make_inputs, tmp_path):
    inputs = make_inputs(n=3)
    out = tmp_path / "out"
    good = ["scene0", "scene1", "scene2"] + (["vol"] if volume_path_available() else [])

    state, seen = run_batch(inputs=[inputs], model=make_checkpoint(0), out=out)

    assert state.is_failed()
    assert "1 of" in state.message and "broken:" in state.message  # one line per failed scene, with why
    assert sorted(name for *_, name, status in seen if status == "done") == good
    assert [s[:2] for s in seen] == [(i + 1, len(good) + 1) for i in range(len(good) + 1)]
    for name in good:
        rec = read_record(out / name)
        assert rec is not None and rec["outputs"]
        assert all((out / name / f).is_file() for f in rec["outputs"].values())
    assert read_record(out / "broken") is None
    summary = json.loads((out / "run_summary.json").read_text())  # the QA run report's summary
    row = {r["scene"]: r for r in summary["rows"]}
    assert (summary["totals"]["scenes"], summary["totals"]["failed"]) == (len(good) + 1, 1)
    assert all(row[n]["status"] in ("complete", "no-qa") for n in good)  # no-qa: volumes until their QA lands
    assert row["broken"]["status"] == "failed" and "broken.tif" in row["broken"]["error"]
    assert abs(sum(row["scene0"]["class_fractions"].values()) - 1) < 1e-6
    assert (out / "run_report.html").is_file()
    assert any("scene0: segmenting" in m for m in engine_logs(state)), "engine logs missing from Prefect"
    before = record_mtimes(out)

    state2, seen2 = run_batch(inputs=[inputs], model=make_checkpoint(0), out=out)

    assert state2.is_failed()  # the corrupt scene is still corrupt
    assert {name: status for *_, name, status in seen2} == {**{n: "skipped" for n in good}, "broken": "failed"}
    assert record_mtimes(out) == before
    summary = json.loads((out / "run_summary.json").read_text())
    assert sorted(r["status"] for r in summary["rows"]) == ["failed"] + ["skipped"] * len(good)



def test_changing_model_or_output_setting_redoes_scenes(prefect_server, make_checkpoint, make_inputs, tmp_path):
    inputs = make_inputs(n=2, corrupt=False, volume=False)
    out = tmp_path / "out"
    statuses = []
    for fields in (
        {},                                     # first run: everything done
        {"workers": 2, "batch_size": 3},        # not output-changing: skipped
        {"model": make_checkpoint(1)},          # new model: redone
        {"model": make_checkpoint(1), "blend": "hann"},  # output-changing setting: redone
        {"model": make_checkpoint(1), "blend": "hann"},  # same again: skipped
    ):
        state, seen = run_batch(**{"inputs": [inputs], "model": make_checkpoint(0), "out": out, **fields})
        assert state.is_completed(), state.message
        statuses.append(sorted({status for *_, status in seen}))
    assert statuses == [["done"], ["skipped"], ["done"], ["done"], ["skipped"]]
    rec = read_record(out / "scene0")
    assert rec["fingerprint"]["blend"] == "hann"


def test_changed_input_or_missing_record_is_redone(prefect_server, make_checkpoint, make_inputs, tmp_path):
    from data.synthetic import write_scene

    inputs = make_inputs(n=2, corrupt=False, volume=False)
    out = tmp_path / "out"
    run_batch(inputs=[inputs], model=make_checkpoint(0), out=out)
    write_scene(inputs / "scene0.tif", 96, 96, bands=1, seed=7)  # same size, new content
    (out / "scene1" / "record.json").unlink()  # as if killed just before the record
    state, seen = run_batch(inputs=[inputs], model=make_checkpoint(0), out=out)
    assert state.is_completed()
    assert {name: status for *_, name, status in seen} == {"scene0": "done", "scene1": "done"}
