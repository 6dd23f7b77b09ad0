"""The run-summary table artifact: Prefect-valid keys, plain types, main classes."""

from __future__ import annotations

import re
from types import SimpleNamespace

import numpy as np

from flows.report import artifact_key, main_classes, summary_rows
from flows.scenes import SceneOutcome


def test_artifact_keys_are_valid_for_prefect():
    for root in ("/results/Land Cover_2024", "/x/ÄÖ..//", "/"):
        assert re.fullmatch(r"[a-z0-9-]*", artifact_key("run-summary", root))
    key = artifact_key("run-summary", "/r/Night_Run")
    assert key.startswith("segpipe-run-summary-night-run-") and key == artifact_key("run-summary", "/r/Night_Run")
    # two jobs whose output roots share a name keep separate histories (they collided before)
    assert artifact_key("run-summary", "/a/results") != artifact_key("run-summary", "/b/results")


def test_summary_rows_hold_plain_values_and_main_classes():
    row = SimpleNamespace(scene="a", verdict="warn", class_fractions={"water": np.float32(0.25), "soil": 0.7,
                                                                      "built": 0.05, "veg": 0.0},
                          class_areas_ha={"water": np.float64(1.5), "soil": None})
    summary = SimpleNamespace(rows=[row])
    outs = [SceneOutcome("a", "/in/a.tif", "/o/a", "done", np.float32(1.234),
                         outputs={"mask": "/o/a/a_mask.tif", "record": "/o/a/record.json"}),
            SceneOutcome("b", "/in/b.tif", "/o/b", "failed", error="bad input", worker="gpu-a:4242")]
    rows = summary_rows(outs, summary)
    assert rows[0] == {"scene": "a", "status": "done", "duration_s": 1.23,
                       "main_classes": "soil 70.0%, water 1.50 ha (25%), built 5.0%", "qa_verdict": "warn",
                       "error": "", "outputs": "/o/a/a_mask.tif", "worker": "batch process"}
    assert type(rows[0]["duration_s"]) is float
    assert rows[1]["qa_verdict"] == "fail" and rows[1]["error"] == "bad input" and rows[1]["worker"] == "gpu-a:4242"
    assert main_classes(row).startswith("soil")
