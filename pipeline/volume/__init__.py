"""Medical volumes (NIfTI): read into canonical RAS+ order, slice for the 2D engine, write back.

    io.py          read_volume / iter_volumes -> Volume (canonical float32 + the way back)
    stream.py      open_streamed: a Volume decoded in the background while it is segmented
    write.py       write_label_volume: input header copy, temp file, geometry check, sidecars
    orient.py      canonical voxel order by axis permutation and flips only, and back
    slicing.py     through-plane axis, 2.5D slabs (n, context, H, W), SliceAssembler
    normalize.py   per-volume statistics once, then the same elementwise map per slab
    stats.py       per-label voxel counts and mL, accumulated slice by slice
    labelfiles.py  text of the JSON / 3D Slicer / ITK-SNAP label files
    engine.py      the slice loop: slabs -> tiles -> model -> streaming stitcher -> slice planes
    run.py         segment_volume: the whole file -> label volume(s) + record.json
                   (import it from ``pipeline.volume.run``; it needs the scene engine)
"""

from .io import Volume, iter_volumes, read_volume
from .orient import CANONICAL, Orientation, orientation_of
from .slicing import SliceAssembler, default_slice_axis, encode_unit, slab, slab_planes, slab_valid
from .stats import LabelVolumes, label_volumes
from .write import compare_geometry, write_label_volume

__all__ = [
    "CANONICAL", "LabelVolumes", "Orientation", "SliceAssembler", "Volume", "compare_geometry",
    "default_slice_axis", "encode_unit", "iter_volumes", "label_volumes", "orientation_of",
    "read_volume", "slab", "slab_planes", "slab_valid", "write_label_volume",
]
