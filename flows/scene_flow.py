"""The per-scene flow: one input, as a flow run of its own.

The batch flow fans scenes out as runs of this flow's deployment (``segment-scene``), so
the workers of every GPU machine take scenes of the same night's batch one at a time.
"""

from __future__ import annotations

from typing import Any

from prefect import flow

from .env import attach_engine_logs
from .tasks import segment_scene_task

SCENE_FLOW_NAME = "segment-scene"


@flow(name=SCENE_FLOW_NAME, flow_run_name="{name}", persist_result=False)
def segment_scene_flow(name: str, input: str, model: str, out: str,
                       options: dict[str, Any] | None = None, qa: dict[str, Any] | None = None) -> dict[str, Any]:
    """Segment one scene or volume into ``out/<name>/`` (skipped when its record is current).

    Args:
        name: the scene's folder name under ``out`` (shown as the flow run's name).
        input: path of the GeoTIFF / NIfTI file, as the worker sees it (shared storage).
        model: checkpoint path; loaded once per worker process.
        out: output root.
        options: ``segpipe run`` options (``flows.config.RunOptions`` fields).
        qa: QA verdict thresholds (``pipeline.qa.QAThresholds`` fields); defaults when None.
    """
    attach_engine_logs()
    return segment_scene_task(name=name, input=input, model=model, out=out, options=options or {}, qa=qa)
