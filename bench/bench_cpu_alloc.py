"""CPU model calls with and without transparent huge pages for torch's big buffers.

    python bench/bench_cpu_alloc.py                         # resnet18 U-Net, 3 channels, batch 2 and 8
    python bench/bench_cpu_alloc.py --encoder resnet34 --batches 2

For each batch size, a fresh interpreter per setting (torch reads ``THP_MEM_ALLOC_ENABLE``
once) times ``--calls`` predictor calls after one warm-up and prints ms per tile, minor
page faults and user/system CPU seconds per call. ``pipeline`` sets the variable to 1 on
import (pipeline/__init__.py); this shows what that buys.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

CHILD = """
import resource, sys, time
sys.path.insert(0, {root!r})
import pipeline, torch
from bench.common import make_model
from pipeline.engine import Predictor
from pipeline.spec import ModelSpec
spec = ModelSpec({ch}, (1,), ("a", "b", "c", "d"), context={ch}, tile={tile})
pred = Predictor(make_model("unet", {encoder!r}, {ch}, 4), spec, torch.device("cpu"))
x = torch.rand({batch}, {ch}, {tile}, {tile})
pred(x)
r0, t = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
for _ in range({calls}):
    pred(x)
dt, r1 = time.perf_counter() - t, resource.getrusage(resource.RUSAGE_SELF)
n = {calls}
print(f"{{dt / n / {batch} * 1000:7.0f}} ms/tile {{(r1.ru_minflt - r0.ru_minflt) / n:10.0f}} faults/call "
      f"user {{(r1.ru_utime - r0.ru_utime) / n:5.2f}} s  sys {{(r1.ru_stime - r0.ru_stime) / n:5.2f}} s per call")
"""


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--encoder", default="resnet18")
    ap.add_argument("--channels", type=int, default=3)
    ap.add_argument("--tile", type=int, default=512)
    ap.add_argument("--batches", type=int, nargs="+", default=[2, 8])
    ap.add_argument("--calls", type=int, default=5)
    args = ap.parse_args()
    for batch in args.batches:
        code = CHILD.format(root=str(ROOT), ch=args.channels, tile=args.tile, encoder=args.encoder, batch=batch,
                            calls=args.calls)
        for thp in ("0", "1"):
            env = {**os.environ, "THP_MEM_ALLOC_ENABLE": thp}
            out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
            print(f"{args.encoder} batch {batch:2d} THP_MEM_ALLOC_ENABLE={thp}: {out.stdout.strip()}")


if __name__ == "__main__":
    main()
