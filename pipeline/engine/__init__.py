"""The engine: planes -> tiles -> model -> blend -> finished bands, on the model's device.

    loop.py       one loop over (plane, tile) units for scenes and volumes; the reader thread
    upload.py     host buffers and the one way pixels travel to the device
    normalize.py  the one normalisation map, its numbers made once per input
    predict.py    batched model calls: autocast, channels_last, flip TTA, OOM halving
    stitch.py     streaming blend and the one finisher of bands
    bands.py      finished bands on their way to the host

Compute only: a source (``pipeline.readers``) reads, the writer thread (``pipeline.sinks``) writes.
"""

from .bands import PROB_NODATA, PROB_SCALE, Band, BandField, HostCopies, Pending
from .loop import Engine, EngineStats, PlaneSource, Progress, ProgressFn
from .normalize import NormStats, normalise, normalise_array, stats_for, volume_stats
from .predict import Predictor, resolve_device
from .stitch import BandReducer, Stitcher
from .upload import Block, Strip

__all__ = [
    "PROB_NODATA", "PROB_SCALE", "Band", "BandField", "BandReducer", "Block", "Engine", "EngineStats", "HostCopies",
    "NormStats", "Pending", "PlaneSource", "Predictor", "Progress", "ProgressFn", "Stitcher", "Strip", "normalise",
    "normalise_array", "resolve_device", "stats_for", "volume_stats",
]
