"""Outputs: sinks fed finished bands by the writer thread, each renamed into place when complete.

    base.py     the Sink contract (band fields consumed), SinkSet (all or none)
    writer.py   the writer thread: sinks must succeed, observers (QA) are best effort
    geotiff/    scene outputs as validated COGs
    nifti/      volume outputs in the input's own NIfTI geometry
"""

from .base import FieldSink, Sink, SinkSet
from .writer import BandWriter, Watched

__all__ = ["BandWriter", "FieldSink", "Sink", "SinkSet", "Watched"]
