"""Volume outputs: label (and confidence / probability) volumes in the input's own geometry.

    volume.py       finished bands -> canonical volumes (SliceAssembler) -> one sink per output
    write.py        write_label_volume: input header copy, temp file, geometry check, sidecars
    labelfiles.py   text of the JSON / 3D Slicer / ITK-SNAP label files
    labelvolumes.py per-label voxel counts and mL, from the bands' tallies
    pgzip.py        .nii.gz compressed on every core
"""

from .labelvolumes import LabelVolumes, label_volumes
from .volume import SliceAssembler, VolumeSink, encode_unit, file_safe, volume_sinks
from .write import compare_geometry, sidecars, write_label_volume

__all__ = ["LabelVolumes", "SliceAssembler", "VolumeSink", "compare_geometry", "encode_unit", "file_safe",
           "label_volumes", "sidecars", "volume_sinks", "write_label_volume"]
