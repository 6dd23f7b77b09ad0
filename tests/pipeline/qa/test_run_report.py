"""Run report: table rows, failures, drift against the job's history, rebuild from disk, CLI."""

import argparse
import json
import re

import numpy as np
import pytest

from pipeline.qa import (QAReport, QAThresholds, SceneEntry, load_run_summary, run_artifacts, write_run_report,
                         write_scene_error)
from pipeline.qa.schema import AreaInfo, ClassStats, InputFacts, ModelFacts, Verdict

NAMES = ("background", "water", "built")


def _report(scene, fractions, verdict="pass"):
    n = 10_000
    classes = [ClassStats(index=i, name=name, pixels=int(f * n), fraction=f, area_m2=f * n * 100,
                          area_ha=f * n / 100, components=1, largest_component=int(f * n),
                          largest_touches_border=False, touches_border=False, touches_nodata=False)
               for i, (name, f) in enumerate(zip(NAMES, fractions))]
    return QAReport(scene=scene, created="2024-01-01T00:00:00+00:00",
                    input=InputFacts(path=f"/in/{scene}.tif", width=100, height=100, valid_pixels=n,
                                     total_pixels=n, valid_fraction=1.0),
                    model=ModelFacts(path="m.safetensors", sha256="0" * 64, class_names=list(NAMES)),
                    area=AreaInfo(unit="m2", per_pixel=100.0), classes=classes, verdict=Verdict(status=verdict))


def _run(root, name, scenes):
    run = root / name
    for scene, fr in scenes.items():
        (run / scene).mkdir(parents=True)
        (run / scene / "qa.json").write_text(_report(scene, fr).model_dump_json())
    return run


def _normal(rng, i):
    w = 0.2 + rng.normal(0, 0.02)
    b = 0.1 + rng.normal(0, 0.01)
    return (1 - w - b, w, b)


def test_drift_flags_a_scene_outside_the_history(tmp_path):
    rng = np.random.default_rng(0)
    hist = tmp_path / "job-history.jsonl"
    for night in range(3):
        run = _run(tmp_path, f"night{night}", {f"s{i}": _normal(rng, i) for i in range(5)})
        _, js = write_run_report(run, job="coast", history_path=hist)
        assert load_run_summary(js).totals.drifted == 0  # fewer than 3 earlier runs: no baseline yet
    assert load_run_summary(js).baseline == {}
    scenes = {f"s{i}": _normal(rng, i) for i in range(4)}
    scenes["flooded"] = (0.3, 0.6, 0.1)
    run = _run(tmp_path, "night3", scenes)
    html, js = write_run_report(run, job="coast", history_path=hist)
    s = load_run_summary(js)
    rows = {r.scene: r for r in s.rows}
    assert any(d.startswith("water 60.0% outside") for d in rows["flooded"].drift)
    assert rows["flooded"].verdict == "warn"  # drift raises pass -> warn (QAThresholds.drift)
    assert not any(rows[f"s{i}"].drift for i in range(4))
    assert s.history_runs == 3 and s.baseline["water"].runs == 3 and s.baseline["water"].samples == 15
    assert s.totals.drifted == 1 and s.totals.verdicts == {"pass": 4, "warn": 1, "fail": 0}
    # Another job's history is not this job's baseline.
    _, other = write_run_report(run, job="inland", history_path=hist, update_history=False)
    assert load_run_summary(other).totals.drifted == 0
    # Rebuilding the same run replaces its history entry instead of adding one.
    write_run_report(run, job="coast", history_path=hist)
    lines = [json.loads(x) for x in hist.read_text().splitlines()]
    assert [x["run_id"] for x in lines] == ["night0", "night1", "night2", "night3"]


def test_failed_scenes_links_totals_and_artifacts(tmp_path):
    run = _run(tmp_path, "r1", {"a": (0.7, 0.2, 0.1), "b": (0.5, 0.4, 0.1)})
    (run / "b" / "qa.json").write_text(_report("b", (0.5, 0.4, 0.1), "fail").model_dump_json())
    write_scene_error(run / "broken", RuntimeError("CUDA error: device-side assert"))
    html, js = write_run_report(run)
    s = load_run_summary(js)
    rows = {r.scene: r for r in s.rows}
    assert rows["broken"].status == "failed" and "device-side assert" in rows["broken"].error
    assert rows["a"].qa_html == "a/qa.html" and rows["a"].class_areas_ha["water"] == pytest.approx(20.0)
    assert s.totals.failed == 1 and s.totals.complete == 2 and s.totals.area_ha["water"] == pytest.approx(60.0)
    text = html.read_text()
    assert 'href="a/qa.html"' in text and "Failed scenes" in text and "device-side assert" in text
    assert "http://" not in text and "https://" not in text
    table, md = run_artifacts(s)
    assert {r["scene"] for r in table} == {"a", "b", "broken"}
    assert all(type(v) in (str, float) for r in table for v in r.values())
    assert "| b | complete | fail |" in md and "broken" in md
    # Entries from the flow win over the folder scan (e.g. a scene that was skipped).
    _, js2 = write_run_report(run, [SceneEntry("a", run / "a"), SceneEntry("late", status="skipped"),
                                    SceneEntry("b", run / "b", status="skipped")], update_history=False)
    rows = load_run_summary(js2).rows
    assert [r.status for r in rows] == ["complete", "skipped", "skipped"]
    assert rows[1].verdict is None and rows[2].verdict == "fail"  # up to date: its earlier QA still shows


def test_redecide_with_new_thresholds(tmp_path):
    run = _run(tmp_path, "r1", {"a": (0.7, 0.2, 0.1)})
    th = QAThresholds(class_fraction={"water": (0.3, 1.0)})
    _, js = write_run_report(run, thresholds=th, redecide=True, update_history=False)
    row = load_run_summary(js).rows[0]
    assert row.verdict == "warn" and "water" in row.reasons[0]


def test_cli_rebuilds_report(tmp_path, capsys):
    from flows import cli_report

    run = _run(tmp_path, "r1", {"a": (0.7, 0.2, 0.1)})
    write_scene_error(run / "z", "InputError: not a raster")
    parser = argparse.ArgumentParser()
    cli_report.register(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["report", str(run), "--job", "j"])
    assert args.func(args) == 0
    out = capsys.readouterr().out
    assert "run_report.html" in out and "1 pass" in out and "1 failed" in out
    assert (run / "run_summary.json").is_file() and (run / ".segpipe" / "history.jsonl").is_file()
    bad = tmp_path / "th.json"
    bad.write_text('{"max_seam_scor": 3}')
    args = parser.parse_args(["report", str(run), "--thresholds", str(bad)])
    from pipeline.errors import ConfigError

    with pytest.raises(ConfigError, match="max_seam_scor"):
        args.func(args)
    args = parser.parse_args(["report", str(run), "--timezone", "Asia/Tokyo", "--no-history-update"])
    assert args.func(args) == 0
    assert "JST (UTC+09:00)" in (run / "run_report.html").read_text()  # the times in the zone asked for
    args = parser.parse_args(["report", str(run), "--timezone", "Mars/Olympus"])
    with pytest.raises(ConfigError, match="--timezone 'Mars/Olympus': unknown zone; expected an IANA name"):
        args.func(args)


def _scenes_tbody(html: str) -> str:
    start = html.index('<table id="scenes">')
    return html[start: html.index("</table>", start)]


def test_banner_says_what_needs_a_look_and_failures_come_first(tmp_path):
    run = _run(tmp_path, "r1", {"a": (0.7, 0.2, 0.1), "b": (0.5, 0.4, 0.1), "c": (0.6, 0.3, 0.1),
                                "d": (0.6, 0.3, 0.1)})
    failing = _report("b", (0.5, 0.4, 0.1), "fail")
    failing = failing.model_copy(update={"verdict": Verdict(status="fail", reasons=[
        {"code": "check_cog", "severity": "fail", "message": "check cog failed: not a valid COG"}])})
    (run / "b" / "qa.json").write_text(failing.model_dump_json())
    (run / "c" / "qa.json").write_text(_report("c", (0.6, 0.3, 0.1), "warn").model_dump_json())
    write_scene_error(run / "broken", "InputError: /in/broken.tif: not a raster")
    write_scene_error(run / "gone", "OSError: disk full")
    html = write_run_report(run, update_history=False)[0].read_text()
    assert '<div class="banner fail">2 scenes failed, 1 QA fail, 1 QA warn<small>' in html
    rows = [re.findall(r"<td[^>]*>(.*?)</td>", tr) for tr in re.findall(r"<tr>(.*?)</tr>", _scenes_tbody(html))]
    rows = {re.sub(r"<[^>]+>", "", cells[1]): cells for cells in rows[1:]}  # scene name -> cells (row 0: head)
    assert list(rows) == ["broken", "gone", "b", "c", "a", "d"]  # failed, QA fail, QA warn, then passes (by name)
    reasons = {name: cells[4] for name, cells in rows.items()}
    assert "InputError: /in/broken.tif: not a raster" in reasons["broken"] and "disk full" in reasons["gone"]
    assert reasons["b"] == "check cog failed: not a valid COG" and reasons["a"] == "–"


def test_banner_when_everything_passed(tmp_path):
    run = _run(tmp_path, "r1", {"a": (0.7, 0.2, 0.1), "b": (0.6, 0.3, 0.1)})
    html = write_run_report(run, update_history=False)[0].read_text()
    assert '<div class="banner pass">All 2 scenes passed QA<small>' in html
    one = _run(tmp_path / "one", "r1", {"a": (0.7, 0.2, 0.1)})
    assert '<div class="banner pass">The scene passed QA<small>' in write_run_report(one, update_history=False)[0].read_text()


def test_main_classes_leave_background_out_and_volumes_give_ml(tmp_path):
    run = _run(tmp_path, "r1", {"a": (0.7, 0.2, 0.1)})
    _, js = write_run_report(run, update_history=False)
    row = load_run_summary(js).rows[0]
    assert row.background == "background"
    assert row.main_classes() == "water 20.00 ha (20.0%), built 10.00 ha (10.0%)"
    vol = row.model_copy(update={"class_areas_ha": {}, "class_volumes_ml": {"water": 152.25, "built": 7.5}})
    assert vol.main_classes() == "water 152.2 mL, built 7.5 mL"


def test_volume_rows_carry_ml_from_their_report(tmp_path):
    from pipeline.qa.run_report import report_row

    r = _report("ct", (0.9, 0.07, 0.03))
    classes = [c.model_copy(update={"area_m2": None, "area_ha": None, "volume_ml": c.pixels * 0.002})
               for c in r.classes]
    r = r.model_copy(update={"kind": "volume", "classes": classes, "area": AreaInfo(unit="ml", per_pixel=0.002)})
    row = report_row(r, "ct/qa.html", 1.0)
    assert row.class_areas_ha == {} and row.class_volumes_ml["water"] == pytest.approx(1.4)
    assert row.main_classes() == "water 1.4 mL, built 0.6 mL"


def test_times_are_shown_in_the_given_zone(tmp_path):
    run = _run(tmp_path, "r1", {"a": (0.7, 0.2, 0.1)})
    html = write_run_report(run, update_history=False, tz="Europe/Berlin")[0].read_text()
    assert "2024-01-01 01:00 CET" in _scenes_tbody(html)  # the scene's report, written 00:00 UTC
    assert "(UTC+01:00)" in html or "(UTC+02:00)" in html  # the build time, in the header
    summary = json.loads((run / "run_summary.json").read_text())
    assert summary["created"].endswith("+00:00")  # the JSON keeps UTC
    utc = write_run_report(run, update_history=False, tz="UTC")[0].read_text()
    assert "2024-01-01 00:00 UTC" in _scenes_tbody(utc)


def test_each_row_shows_the_scene_mask_thumbnail(tmp_path):
    run = _run(tmp_path, "r1", {"a": (0.7, 0.2, 0.1)})
    r = _report("a", (0.7, 0.2, 0.1)).model_copy(update={"thumbnail": "data:image/webp;base64,UklGRg=="})
    (run / "a" / "qa.json").write_text(r.model_dump_json())
    html = write_run_report(run, update_history=False)[0].read_text()
    assert '<img class="thumb" alt="mask of a" src="data:image/webp;base64,UklGRg==">' in _scenes_tbody(html)
