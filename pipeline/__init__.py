"""segpipe engine: read -> tile -> infer -> stitch -> write -> QA, free of any orchestrator.

The data flow is the folder tree:

    readers/   inputs as planes of raw pixels + validity (geotiff/: scenes, nifti/: volumes)
    tiling/    overlapping windows that cover a plane, and their blend weights
    engine/    one loop over (plane, tile) units: upload, normalise, model, streaming stitcher
    sinks/     the writer thread and the outputs it feeds (geotiff/: COGs, nifti/: volumes)
    qa/        streaming QA statistics, checks, verdicts, qa.html, the run report
    run/       one input -> its output folder: segment_file, QA report, record.json

and beside it: options.py (the run options, declared once), spec.py (a model's contract),
threads.py (every thread and its rules), files.py (atomic outputs), errors.py, lazy.py
(package names imported on first use).
"""

import os

__version__ = "0.1.0"

# Large CPU tensors (a U-Net's activations: ~130 MB each at batch 8 and 512 px tiles) go in
# transparent huge pages. Without this torch gets every big buffer fresh from the kernel,
# which faults in and zeroes it 4 KiB at a time: ~1.1 million page faults and as much system
# time as compute per batch on a small CPU (bench/RESULTS.md). torch reads the variable once,
# at its first allocation, so it is set before anything imports torch; a value the user
# already set (0 to opt out) is kept. No effect on GPU memory.
os.environ.setdefault("THP_MEM_ALLOC_ENABLE", "1")

# torch's CPU threads (OpenMP) sleep when they wait instead of spinning (pipeline/cpu.py:
# "Threads"). Spinning burns a core per waiting thread between the model's operations, which
# the reader, writer and QA threads, and any other process on the machine, then lack: on the
# shared 2-core machine the model ran 2-4x slower for it (bench/RESULTS.md, "Threads").
# OpenMP reads this when torch loads, hence here; a value the user set (ACTIVE) is kept.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
