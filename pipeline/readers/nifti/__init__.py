"""NIfTI volume input: read into canonical RAS+ order, decode while segmenting, slice with 2.5D context.

    header.py     the header, read and checked (both readers share it)
    volume.py     read_volume / iter_volumes -> Volume (canonical float32 + the way back)
    decode.py     open_streamed: a Volume decoded in the background while it is segmented
    readahead.py  ReadAhead: a batch's next volume, decoding while this one runs
    orient.py     canonical voxel order by axis permutation and flips only, and back
    slicing.py    the slicing convention: through-plane axis, 2.5D context, slabs
    source.py     VolumeSource: a volume as the engine's plane source
"""

from .decode import Arrival, open_streamed
from .header import scaling_of
from .orient import CANONICAL, Orientation, orientation_of
from .readahead import ReadAhead
from .slicing import context_indices, default_slice_axis, plane_shape, slab, slab_planes, slab_valid
from .source import VolumeSource
from .volume import Volume, iter_volumes, read_volume

__all__ = [
    "CANONICAL", "Arrival", "Orientation", "ReadAhead", "Volume", "VolumeSource", "context_indices",
    "default_slice_axis", "iter_volumes", "open_streamed", "orientation_of", "plane_shape", "read_volume",
    "scaling_of", "slab", "slab_planes", "slab_valid",
]
