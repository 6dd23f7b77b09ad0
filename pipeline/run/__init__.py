"""The run layer: one input -> its folder of outputs, QA report and record, for scenes and volumes alike.

    segment.py  segment_file: the entry point, by input kind
    geotiff.py  a raster scene's run (COGs)
    nifti.py    a NIfTI file's run (label volumes; each volume of a series)
    layer.py    what both stand on: streaming an image to its sinks, ending with QA and the record
    folder.py   the input's output folder: locked, staged, swapped into place when complete
    qa.py       QA reports at the end, never at the cost of the outputs
    planes.py   whole planes of a volume for its QA
    record.py   record.json

The names below are imported on first use (PEP 562): ``pipeline.run.record`` and ``.folder``
load without torch, so a CLI that only reads records starts fast.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..lazy import lazy_exports

_EXPORTS = {
    "SceneBusy": "folder", "SceneChanged": "folder", "SceneFolder": "folder", "record_token": "folder",
    "scene_dir_for": "folder", "ModelHandle": "layer", "SceneResult": "layer", "segment_file": "segment",
}

__all__ = sorted(_EXPORTS)


__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)


if TYPE_CHECKING:
    from .folder import SceneBusy, SceneChanged, SceneFolder, record_token, scene_dir_for
    from .layer import ModelHandle, SceneResult
    from .segment import segment_file

