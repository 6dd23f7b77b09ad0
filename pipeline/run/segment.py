"""``segment_file``: any supported input, by its kind: NIfTI volumes by name, everything else through GDAL."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from ..engine import ProgressFn
from ..options import RunOptions
from ..qa import QAThresholds
from ..errors import InputError
from ..readers import is_volume
from ..readers.dicom import dicom_message, is_dicom
from ..readers.vsi import as_input, is_gdal_path, shown
from ..readers.nifti import ReadAhead
from ..sinks.writer import Observer
from .layer import ModelHandle, SceneResult


def segment_file(input_path: str | Path, model: ModelHandle, out_root: str | Path,
                 options: RunOptions = RunOptions(), *, progress: ProgressFn | None = None,
                 observers: Sequence[Observer] = (), qa: bool = True, qa_thresholds: QAThresholds | None = None,
                 read_ahead: ReadAhead | None = None, expect_record: str | None = None) -> SceneResult:
    """Segment one input into ``out_root/<name>/`` (outputs, QA report, ``record.json`` last).

    ``expect_record``: the folder's :func:`~pipeline.run.folder.record_token` when the caller
    decided to (re)do it; another run completing it since raises ``SceneChanged`` untouched.

    ``observers`` see the finished bands (a volume's: whole slice planes), best effort; ``read_ahead`` is a batch's
    slot for its next volume, which may hold this one already decoding.
    """
    input_path = as_input(input_path)
    if is_gdal_path(input_path):
        if is_volume(input_path):
            raise InputError(f"{shown(input_path)}: NIfTI volumes are read from local files only (GDAL virtual paths "
                             "are for rasters); copy the volume to a local folder first")
    elif is_dicom(input_path):
        raise InputError(dicom_message(input_path))
    if is_volume(input_path):
        from .nifti import segment_volume

        return segment_volume(input_path, model, out_root, options, progress=progress, observers=observers, qa=qa,
                              qa_thresholds=qa_thresholds, read_ahead=read_ahead, expect_record=expect_record)
    from .geotiff import segment_scene

    return segment_scene(input_path, model, out_root, options, progress=progress, observers=observers, qa=qa,
                         qa_thresholds=qa_thresholds, expect_record=expect_record)
