"""Scene outputs: streaming GeoTIFF sinks that end as validated Cloud-Optimized GeoTIFFs.

    cog.py        tiled temporary GeoTIFF -> COG (GDAL's driver), validated, renamed into place
    overviews.py  a class map's mode overviews, built while its rows stream
    outputs.py    which files a scene gets (mask, confidence, probabilities) and their tags
"""

from .cog import BLOCK, GeoTiffSink, Grid, OutputSpec, cog_problems, gtiff_supports
from .outputs import label_encoding, provenance, scene_sinks

__all__ = ["BLOCK", "GeoTiffSink", "Grid", "OutputSpec", "cog_problems", "gtiff_supports", "label_encoding",
           "provenance", "scene_sinks"]
