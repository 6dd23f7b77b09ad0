"""``--vectors`` against the raster-only run of the same scene: Mpix/s and peak RSS, in one run.

    python3 bench/bench_vectors.py --size 20000 [--pattern islands|web] [--repeat N] [--qa]

A synthetic ``size x size`` one-band scene (tiled, DEFLATE; see :func:`pattern`) is segmented by
a stand-in model that bins intensity into 4 classes (so the engine, the writers and the
vector sink are what is measured, not a network), twice per repeat in child processes:
outputs only, then with ``--vectors``. Each child reports its seconds and its own peak RSS
(VmHWM); the parent prints both, their ratios and the load average before and after (the
machine is shared: only in-run ratios mean much).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

CENTRES = (40.0, 110.0, 170.0, 230.0)  # class k: intensity nearest CENTRES[k]


def pattern(pattern: str, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """uint8 intensities. ``web``: smooth blobs whose classes join into scene-spanning networks
    (one region covers ~40 % of the scene). ``islands``: bounded regions (~60 px lobes, each
    class an island in the background) as buildings or water bodies are."""
    if pattern == "web":
        v = (np.sin(x / 57.0 + 2 * np.sin(y / 91.0)) + np.cos(y / 47.0 + 1.5 * np.sin(x / 73.0))
             + 0.5 * np.sin((x + y) / 23.0))
        return np.clip(128 + 50 * v, 0, 255).astype(np.uint8)
    v = np.sin(x / 57.0 + np.sin(y / 97.0)) * np.sin(y / 61.0)
    out = np.full(v.shape, CENTRES[0], np.float32)
    out[v > 0.35] = CENTRES[2]
    out[v > 0.55] = CENTRES[3]
    out[v < -0.5] = CENTRES[1]
    return out.astype(np.uint8)


def write_scene(path: Path, size: int, kind: str) -> None:
    """The scene, written strip by strip: never whole in memory."""
    import rasterio
    from affine import Affine

    with rasterio.open(path, "w", driver="GTiff", width=size, height=size, count=1, dtype="uint8",
                       crs="EPSG:32633", transform=Affine(10, 0, 500000, 0, -10, 6000000), tiled=True,
                       blockxsize=512, blockysize=512, compress="deflate", bigtiff="IF_SAFER") as ds:
        x = np.arange(size, dtype=np.float32)[None, :]
        for y0 in range(0, size, 512):
            y = np.arange(y0, min(size, y0 + 512), dtype=np.float32)[:, None]
            ds.write(pattern(kind, x, y)[None], window=((y0, y0 + y.shape[0]), (0, size)))


def bins_model():
    import torch

    from pipeline.spec import ModelSpec, Normalization

    class Bins(torch.nn.Module):
        """Class scores = -(x - centre)^2: argmax is the nearest intensity centre."""

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            c = torch.tensor(CENTRES, device=x.device).view(1, -1, 1, 1)
            return -((x - c) ** 2) / 100.0

    spec = ModelSpec(1, (1,), ("background", "water", "forest", "built"), tile=512, overlap=64,
                     normalization=Normalization(kind="none"))

    class Handle:
        module, path, sha256 = Bins(), Path("bins"), "0" * 64

    Handle.spec = spec
    return Handle


def child(scene: Path, out: Path, vectors: bool, qa: bool, workers: int) -> None:
    from pipeline.options import RunOptions
    from pipeline.run.geotiff import segment_scene
    from pipeline.run.record import peak_rss_mb

    t = time.perf_counter()
    res = segment_scene(scene, bins_model(), out, RunOptions(device="cpu", workers=workers, vectors=vectors), qa=qa)
    seconds = time.perf_counter() - t
    print("RESULT " + json.dumps({"seconds": seconds, "peak_rss_mb": peak_rss_mb(),
                                  "vectors": res.record["facts"].get("vectors"), "timings": res.record["timings"]}))


def run_child(args, scene: Path, out: Path, vectors: bool) -> dict:
    cmd = [sys.executable, __file__, "--child", "--scene", str(scene), "--out", str(out),
           "--workers", str(args.workers)]
    cmd += ["--vectors"] if vectors else []
    cmd += ["--qa"] if args.qa else []
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, check=False)
    line = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
    if proc.returncode or not line:
        sys.exit(f"child failed:\n{proc.stderr[-4000:]}")
    return json.loads(line[0][7:])


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--size", type=int, default=20000)
    ap.add_argument("--repeat", type=int, default=1)
    ap.add_argument("--pattern", choices=["web", "islands"], default="islands")
    ap.add_argument("--workers", type=int, default=os.cpu_count() or 2)
    ap.add_argument("--qa", action="store_true", help="QA report on in both runs (default: off, the sinks alone)")
    ap.add_argument("--workdir", type=Path, default=None)
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--vectors", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--scene", type=Path, help=argparse.SUPPRESS)
    ap.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        return child(args.scene, args.out, args.vectors, args.qa, args.workers)
    work = Path(args.workdir or tempfile.mkdtemp(prefix="segpipe-bench-vectors-"))
    work.mkdir(parents=True, exist_ok=True)
    scene = work / f"{args.pattern}_{args.size}.tif"
    if not scene.exists():
        t = time.perf_counter()
        write_scene(scene, args.size, args.pattern)
        print(f"scene {args.size} x {args.size} written in {time.perf_counter() - t:.0f} s", flush=True)
    mpix = args.size * args.size / 1e6
    print(f"load average before: {os.getloadavg()}", flush=True)
    ratios = []
    for i in range(args.repeat):
        raster = run_child(args, scene, work / f"raster{i}", vectors=False)
        vec = run_child(args, scene, work / f"vectors{i}", vectors=True)
        ratio = vec["seconds"] / raster["seconds"]
        ratios.append(ratio)
        print(f"[{i}] raster only: {mpix / raster['seconds']:.1f} Mpix/s ({raster['seconds']:.1f} s), peak RSS "
              f"{raster['peak_rss_mb']:.0f} MiB | with vectors: {mpix / vec['seconds']:.1f} Mpix/s "
              f"({vec['seconds']:.1f} s), peak RSS {vec['peak_rss_mb']:.0f} MiB | time x{ratio:.2f}, RSS "
              f"{vec['peak_rss_mb'] - raster['peak_rss_mb']:+.0f} MiB | {vec['vectors']['features']:,} features "
              f"{vec['vectors']['features_per_class']} | finalise {raster['timings']['finalise_s']:.1f} s vs "
              f"{vec['timings']['finalise_s']:.1f} s (the vector layer's last regions and file)", flush=True)
    print(f"median time ratio {float(np.median(ratios)):.2f}; load average after: {os.getloadavg()}")


if __name__ == "__main__":
    main()
