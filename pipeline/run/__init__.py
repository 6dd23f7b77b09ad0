"""The run layer: one input -> its folder of outputs, QA report and record, for scenes and volumes alike.

    segment.py  segment_file: the entry point, by input kind
    geotiff.py  a raster scene's run (COGs)
    nifti.py    a NIfTI file's run (label volumes; each volume of a series)
    layer.py    what both stand on: streaming an image to its sinks, ending with QA and the record
    folder.py   the input's output folder
    qa.py       QA reports at the end, never at the cost of the outputs
    planes.py   whole planes of a volume for its QA
    record.py   record.json
"""

from .folder import prepare_scene_dir, scene_dir_for
from .layer import ModelHandle, SceneResult
from .segment import segment_file

__all__ = ["ModelHandle", "SceneResult", "prepare_scene_dir", "scene_dir_for", "segment_file"]
