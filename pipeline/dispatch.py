"""Choose the scene (raster) or volume (NIfTI) path from the file type."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .scene import ModelHandle, ProgressFn, RowObserver, SceneResult, segment_scene
from .settings import RunSettings

VOLUME_SUFFIXES = (".nii", ".nii.gz")


def is_volume(path: str | Path) -> bool:
    return str(path).lower().endswith(VOLUME_SUFFIXES)


def segment_file(input_path: str | Path, model: ModelHandle, out_root: str | Path,
                 settings: RunSettings = RunSettings(), *, progress: ProgressFn | None = None,
                 observers: tuple[RowObserver, ...] = (), **kw: Any) -> SceneResult:
    """Segment any supported input: NIfTI volumes by extension, everything else through GDAL.

    ``observers`` are row observers for scenes (volumes take slice observers through
    ``segment_volume`` directly); ``kw`` (``qa``, ``qa_thresholds``) goes to either path.
    """
    if is_volume(input_path):
        from .volume.run import segment_volume  # the volume path (issue 3)

        return segment_volume(input_path, model, out_root, settings, progress=progress, **kw)
    return segment_scene(input_path, model, out_root, settings, progress=progress, observers=observers, **kw)
