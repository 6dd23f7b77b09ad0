"""segpipe engine: read -> tile -> infer -> stitch -> write, free of any orchestrator.

Data flows through the modules in this order (see README "How it works"):

    raster/read.py     windowed, parallel, block-aligned strip reads + validity mask
    tiling.py          overlapping windows that cover the extent, last one snapped
    infer.py           batched model calls (autocast, channels_last, flip TTA)
    stitch.py          streaming blend: rows are finished and freed as tiles pass
    raster/write.py    tiled temp GeoTIFF -> validated COG, renamed when complete
    scene.py           wires the above for one scene and writes record.json
"""

__version__ = "0.1.0"
