"""End-to-end vs model-only vs MONAI throughput of one scene, at fp32 and ``auto``, and peak memory.

    python bench/bench_scene.py --size 2048 --repeat 3         # CPU, resnet34 U-Net, fp32 and auto
    python bench/bench_scene.py --size 20000 --model tiny      # memory: 20k x 20k, cheap model
    python bench/bench_scene.py --size 16384 --device cuda     # GPU

Every figure is *scene* Mpix/s (scene pixels / seconds), all measured in the same run, for
each ``--precision`` (default ``fp32 auto``: auto is bf16 on a GPU and on CPUs with native
bf16): model-only runs the same model, with the same tile/overlap/batch settings and
precision, on as many tiles as the scene needs, from tensors already on the device;
end-to-end is ``segment_scene`` from the GeoTIFF on disk to a validated COG (reading,
normalising, stitching, writing, overviews and input hashing included), in a child process
so its peak RSS is its own; MONAI is ``sliding_window_inference`` on the normalised scene
already in memory (bench/monai_ref.py), same model, tile, overlap, gaussian blend and precision.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench import monai_ref, report  # noqa: E402
from bench.common import (MODEL_OPTIONS, add_common_args, child_command, engine_tile,  # noqa: E402
                          make_model, measure_rounds, model_only_seconds, resolve_batch, set_threads, warm_up)


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
    from pipeline.options import RunOptions

    return RunOptions(device=args.device, batch_size=args.batch_size, workers=args.workers,
                       tile=args.tile, overlap=args.overlap, precision=args.precision[0])


def end_to_end(args) -> None:
    """Child process: run the engine once, print one JSON line."""
    from pipeline.run.record import peak_rss_mb
    from pipeline.run.geotiff import segment_scene

    h = handle(args)
    tile = engine_tile(args.size, args.size, args.tile, args.overlap)
    warm_up(h, args.device, args.batch_size, args.bands, tile, args.precision[0])
    t = time.perf_counter()
    res = segment_scene(args.scene, h, args.out, settings(args), qa=not args.no_qa)
    dt = time.perf_counter() - t
    out = dict(seconds=dt, peak_rss_mb=peak_rss_mb(),
               tiles=res.record["facts"]["tiles_total"] - res.record["facts"]["tiles_skipped"],
               timings=res.record["timings"], facts=res.record["facts"])
    print("RESULT " + json.dumps(out))


def model_only(args, precision: str, tiles: int) -> float:
    tile = engine_tile(args.size, args.size, args.tile, args.overlap)  # the engine's, for images under a tile
    return model_only_seconds(handle(args), args.device, args.batch_size, args.bands, tile, tiles, precision)


def monai(args, scene: Path):
    """precision -> MONAI's seconds on the scene in memory, or None without MONAI."""
    if args.no_monai:
        return None
    if not monai_ref.available():
        print(monai_ref.INSTALL_HINT)
        return None
    h = handle(args)
    x = monai_ref.scene_input(scene, h.spec, args.device)
    return lambda p: monai_ref.monai_seconds(x, h, args.device, p, args.tile, args.overlap, args.batch_size)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--size", type=int, default=2048, help="scene side in pixels")
    ap.add_argument("--bands", type=int, default=4)
    ap.add_argument("--workers", type=int, default=os.cpu_count() or 2)
    ap.add_argument("--no-qa", action="store_true", help="skip the QA report (engine alone)")
    ap.add_argument("--scene", type=Path, help=argparse.SUPPRESS)
    add_common_args(ap)
    args = ap.parse_args()
    resolve_batch(args)
    set_threads(args)
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

    def child(p: str) -> list[str]:
        return child_command(__file__, args, (*MODEL_OPTIONS, "bands", "workers"), "--scene", str(scene),
                             "--out", str(work / f"out_{p}"), "--precision", p, *(["--no-qa"] if args.no_qa else []))

    rounds = measure_rounds(args.repeat, args.precision, child, lambda p, e2e: model_only(args, p, e2e["tiles"]),
                            monai(args, scene))
    last = rounds[-1][args.precision[-1]]["result"]
    print(json.dumps({"timings": last["timings"], "facts": last["facts"]}, indent=None))
    reasons = "; ".join(f"{p}: {one['result']['facts']['precision']} ({one['result']['facts'].get('precision_reason')})"
                        for p, one in rounds[0].items())
    print(f"scene {args.size}x{args.size}x{args.bands} uint16, {args.model}/{args.encoder}, tile {args.tile}, "
          f"overlap {args.overlap}, batch {args.batch_size}, device {last['facts']['device']}, {last['tiles']} tiles, "
          f"QA {'off' if args.no_qa else 'on'}, threads {args.threads or 'default'}, "
              f"OMP_WAIT_POLICY {os.environ.get('OMP_WAIT_POLICY')}; {reasons}")
    report.print_rounds("Mpix", args.size * args.size / 1e6, rounds)
    report.print_summary(rounds)
    report.print_peaks(rounds)


if __name__ == "__main__":
    main()
