"""segpipe engine: read -> tile -> infer -> stitch -> write, free of any orchestrator.

Data flows through the modules in this order (see README "How it works"):

    raster/read.py     windowed, parallel, block-aligned strip reads + validity mask
    tiling.py          overlapping windows that cover the extent, last one snapped
    infer.py           batched model calls (autocast, channels_last, flip TTA)
    stitch.py          streaming blend: rows are finished and freed as tiles pass
    raster/write.py    tiled temp GeoTIFF -> validated COG, renamed when complete
    scene.py           wires the above for one scene and writes record.json
"""

import os

__version__ = "0.1.0"

# Large CPU tensors (a U-Net's activations: ~130 MB each at batch 8 and 512 px tiles) go in
# transparent huge pages. Without this torch gets every big buffer fresh from the kernel,
# which faults in and zeroes it 4 KiB at a time: on the 2-core CPU machine, ~1.1 million
# page faults and as much system time as compute per batch (bench/RESULTS.md). torch reads
# the variable once, at its first allocation, so it is set before anything imports torch;
# a value the user already set (0 to opt out) is kept. No effect on GPU memory.
os.environ.setdefault("THP_MEM_ALLOC_ENABLE", "1")

# torch's CPU threads (OpenMP) sleep when they wait instead of spinning (pipeline/cpu.py:
# "Threads"). Spinning burns a core per waiting thread between the model's operations, which
# the reader, writer and QA threads, and any other process on the machine, then lack: on the
# shared 2-core machine the model ran 2-4x slower for it (bench/RESULTS.md, "Threads").
# OpenMP reads this when torch loads, hence here; a value the user set (ACTIVE) is kept.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
