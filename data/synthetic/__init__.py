"""Synthetic GeoTIFF scenes and NIfTI volumes with ground truth, for tests, demo and benchmarks.

Scenes are streamed: every pixel is a pure function of its *global* (row, col), the scene
size and the seed, so a scene is rendered and written in row bands with memory that does
not grow with its height, and any band height gives the same pixels. Region shapes come
from hashed-lattice value noise (only +, * and comparisons per pixel, so results are
bit-identical however the rows are chunked), built areas from a seeded grid of cells, and
pixel noise from one random generator per fixed 16-row strip.

Volumes are defined in anatomical (RAS+) terms and only then laid out on disk in the
requested orientation, so the same anatomy appears whatever the voxel order.

CLI::

    python -m data.synthetic scene OUT.tif --size 2048 --mask OUT_mask.tif
    python -m data.synthetic volume OUT.nii.gz --orientation LPS --labels OUT_labels.nii.gz
"""

from .cli import main
from .scenes import CLASS_COLORS, CLASS_NAMES, MASK_NODATA, SCENE_DTYPES, SceneInfo, write_scene
from .volumes import LABEL_HU, LABEL_NAMES, VOLUME_DTYPES, VolumeInfo, write_volume

__all__ = ["CLASS_COLORS", "CLASS_NAMES", "LABEL_HU", "LABEL_NAMES", "MASK_NODATA", "SCENE_DTYPES", "SceneInfo",
           "VOLUME_DTYPES", "VolumeInfo", "main", "write_scene", "write_volume"]
