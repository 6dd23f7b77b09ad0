"""The run-summary table artifact: Prefect-valid keys, plain types, main classes."""

from __future__ import annotations

import re
from types import SimpleNamespace

import numpy as np

from flows.report import artifact_key, summary_rows
from pipeline.qa.schema import RunRow
from flows.scenes import SceneOutcome


def test_artifact_keys_are_valid_for_prefect():
    for root in ("/results/Land Cover_2024", "/x/ÄÖ..//", "/"):
        assert re.fullmatch(r"[a-z0-9-]*", artifact_key("run-summary", root))
    key = artifact_key("run-summary", "/r/Night_Run")
    assert key.startswith("segpipe-run-summary-night-run-") and key == artifact_key("run-summary", "/r/Night_Run")
    # two jobs whose output roots share a name keep separate histories (they collided before)
    assert artifact_key("run-summary", "/a/results") != artifact_key("run-summary", "/b/results")


def test_summary_rows_hold_plain_values_and_main_classes():
    row = RunRow(scene="a", status="complete", verdict="warn", background="soil",
                 class_fractions={"water": 0.25, "soil": 0.7, "built": 0.05, "veg": 0.0},
                 class_areas_ha={"water": 1.5, "soil": None})
    vol = RunRow(scene="ct", status="complete", verdict="pass", background="background",
                 class_fractions={"background": 0.9, "kidney": 0.07, "liver": 0.03},
                 class_volumes_ml={"kidney": 152.25, "liver": 61.0})
    summary = SimpleNamespace(rows=[row, vol])
    outs = [SceneOutcome("a", "/in/a.tif", "/o/a", "done", np.float32(1.234),
                         outputs={"mask": "/o/a/a_mask.tif", "record": "/o/a/record.json"}),
            SceneOutcome("b", "/in/b.tif", "/o/b", "failed", error="bad input", worker="gpu-a:4242"),
            SceneOutcome("ct", "/in/ct.nii.gz", "/o/ct", "skipped")]
    rows = summary_rows(outs, summary)
    # background left out (the class a reviewer looks for comes first); ha where known, else %
    assert rows[0] == {"scene": "a", "status": "done", "duration_s": 1.23,
                       "main_classes": "water 1.50 ha (25.0%), built 5.0%", "qa_verdict": "warn",
                       "error": "", "outputs": "/o/a/a_mask.tif", "worker": "batch process"}
    assert type(rows[0]["duration_s"]) is float
    assert rows[1]["qa_verdict"] == "fail" and rows[1]["error"] == "bad input" and rows[1]["worker"] == "gpu-a:4242"
    assert rows[1]["main_classes"] == ""
    assert rows[2]["main_classes"] == "kidney 152.2 mL, liver 61.0 mL"  # volumes in mL, as the run report
