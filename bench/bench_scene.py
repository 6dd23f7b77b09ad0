"""End-to-end vs model-only throughput of one scene, and peak memory.

    python bench/bench_scene.py --size 2048                    # CPU, resnet34 U-Net
    python bench/bench_scene.py --size 20000 --model tiny      # memory: 20k x 20k, cheap model
    python bench/bench_scene.py --size 16384 --device cuda     # GPU

Both figures are *scene* Mpix/s (scene pixels / seconds) measured in the same run:
model-only runs the same model, with the same tile/overlap/batch settings, on as many
tiles as the scene needs, from tensors already on the device; end-to-end is
``segment_scene`` from the GeoTIFF on disk to a validated COG (reading, normalising,
stitching, writing, overviews and input hashing included). The end-to-end run happens
in a child process so its peak RSS is its own.
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

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.common import make_model, model_only_seconds, print_rates, resolve_batch, warm_up  # noqa: E402


def handle(args):
    from dataclasses import dataclass

    import torch

    from pipeline.spec import ModelSpec, Normalization

    @dataclass
    class Handle:
        module: torch.nn.Module
        spec: ModelSpec
        sha256: str = "bench"
        path: Path = Path("bench-model")

    names = ("background", "water", "vegetation", "built")
    spec = ModelSpec(args.bands, tuple(range(1, args.bands + 1)), names, tile=args.tile, overlap=args.overlap,
                     normalization=Normalization(kind="scale", factor=1e-4))
    return Handle(make_model(args.model, args.encoder, args.bands, len(names)), spec)


def settings(args):
    from pipeline.settings import RunSettings

    return RunSettings(device=args.device, batch_size=args.batch_size, workers=args.workers,
                       tile=args.tile, overlap=args.overlap)


def end_to_end(args) -> None:
    """Child process: run the engine once, print one JSON line."""
    from pipeline.record import peak_rss_mb
    from pipeline.scene import segment_scene

    h = handle(args)
    warm_up(h, args.device, args.batch_size, args.bands, args.tile)
    t = time.perf_counter()
    res = segment_scene(args.scene, h, args.out, settings(args), qa=not args.no_qa)
    dt = time.perf_counter() - t
    out = dict(seconds=dt, peak_rss_mb=peak_rss_mb(),
               tiles=res.record["facts"]["tiles_total"] - res.record["facts"]["tiles_skipped"],
               timings=res.record["timings"], facts=res.record["facts"])
    print("RESULT " + json.dumps(out))


def model_only(args, tiles: int) -> float:
    return model_only_seconds(handle(args), args.device, args.batch_size, args.bands, args.tile, tiles)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--size", type=int, default=2048, help="scene side in pixels")
    ap.add_argument("--bands", type=int, default=4)
    ap.add_argument("--encoder", default="resnet34")
    ap.add_argument("--model", choices=["unet", "tiny"], default="unet")
    ap.add_argument("--tile", type=int, default=512)
    ap.add_argument("--overlap", type=int, default=64)
    ap.add_argument("--batch-size", type=int, default=None, help="default: the engine's for the device")
    ap.add_argument("--workers", type=int, default=os.cpu_count() or 2)
    ap.add_argument("--device", default="auto")
    ap.add_argument("--repeat", type=int, default=1, help="end-to-end + model-only pairs")
    ap.add_argument("--workdir", type=Path, default=None)
    ap.add_argument("--no-qa", action="store_true", help="skip the QA report (engine alone)")
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--scene", type=Path, help=argparse.SUPPRESS)
    ap.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    args = ap.parse_args()
    resolve_batch(args)
    if args.child:
        end_to_end(args)
        return

    from data.synthetic import write_scene

    work = args.workdir or Path(tempfile.mkdtemp(prefix="segpipe-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    scene = work / f"scene_{args.size}.tif"
    if not scene.exists():
        t = time.perf_counter()
        write_scene(scene, args.size, args.size, bands=args.bands, dtype="uint16", seed=7)
        print(f"wrote {scene} ({args.size} x {args.size} x {args.bands} uint16) in {time.perf_counter() - t:.1f} s")
    cmd = [sys.executable, __file__, "--child", "--scene", str(scene), "--out", str(work / "out")]
    for k in ("bands", "encoder", "model", "tile", "overlap", "batch_size", "workers", "device"):
        cmd += [f"--{k.replace('_', '-')}", str(getattr(args, k))]
    cmd += ["--no-qa"] if args.no_qa else []
    runs, peak = [], 0.0
    for _ in range(args.repeat):
        proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
        line = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
        if proc.returncode or not line:
            sys.exit(f"end-to-end run failed:\n{proc.stderr[-4000:]}")
        e2e = json.loads(line[0][7:])
        runs.append((e2e["seconds"], model_only(args, e2e["tiles"])))
        peak = max(peak, e2e["peak_rss_mb"])
    print(json.dumps({"timings": e2e["timings"], "facts": e2e["facts"]}, indent=None))
    print(f"scene {args.size}x{args.size}x{args.bands} uint16, {args.model}/{args.encoder}, tile {args.tile}, "
          f"overlap {args.overlap}, batch {args.batch_size}, device {e2e['facts']['device']} "
          f"({e2e['facts']['precision']}), {e2e['tiles']} tiles, QA {'off' if args.no_qa else 'on'}")
    print_rates("Mpix", args.size * args.size / 1e6, runs, peak)

if __name__ == "__main__":
    main()
