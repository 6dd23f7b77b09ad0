"""End-to-end vs model-only vs MONAI throughput of one CT volume (2.5D), at fp32 and ``auto``, and peak memory.

    python bench/bench_volume.py                                     # 512 x 512 x 400, context 3 and 5
    python bench/bench_volume.py --depth 24 --encoder resnet18 --device cpu --repeat 3   # a quick CPU run
    python bench/bench_volume.py --device cuda                        # GPU

Every figure is slices/s (slices of the volume / seconds), all measured in the same run, for
each ``--precision`` (default ``fp32 auto``): model-only runs the same model, with the same
tile/overlap/batch settings and precision, on as many tiles as the volume needs, from
tensors already on the device; end-to-end is ``segment_volume`` from the ``.nii.gz``
(``--uncompressed``: ``.nii``) on disk to the checked label volume and ``record.json``
(decoding, orienting, normalising, 2.5D slabs, stitching, label volume counts, writing and
input hashing included), in a child process so its peak RSS is its own; MONAI is
``sliding_window_inference`` over the normalised 2.5D stack already in memory (every slice
with its neighbours as channels, bench/monai_ref.py), same model, tile, overlap, gaussian
blend and precision.
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

CLASSES = ("background", "body", "organ", "bone")  # data.synthetic's CT labels


def handle(args, context: int):
    from dataclasses import dataclass

    import torch

    from pipeline.spec import ModelSpec, Normalization

    @dataclass
    class Handle:
        module: torch.nn.Module
        spec: ModelSpec
        sha256: str = "bench"
        path: Path = Path("bench-model")

    spec = ModelSpec(context, (1,), CLASSES, context=context, tile=args.tile, overlap=args.overlap,
                     normalization=Normalization(kind="ct_window", window_low=-200.0, window_high=300.0))
    return Handle(make_model(args.model, args.encoder, context, len(CLASSES)), spec)


def settings(args, context: int):
    from pipeline.options import RunOptions

    return RunOptions(device=args.device, batch_size=args.batch_size, tile=args.tile, overlap=args.overlap,
                       context=context, confidence=args.confidence, precision=args.precision[0])


def end_to_end(args) -> None:
    """Child process: run the engine once, print one JSON line."""
    from pipeline.run.record import peak_rss_mb
    from pipeline.run.nifti import segment_volume

    h = handle(args, args.context)
    tile = engine_tile(args.size, args.size, args.tile, args.overlap)
    warm_up(h, args.device, args.batch_size, args.context, tile, args.precision[0])
    t = time.perf_counter()
    res = segment_volume(args.volume, h, args.out, settings(args, args.context))
    dt = time.perf_counter() - t
    facts = res.record["facts"]
    out = dict(seconds=dt, peak_rss_mb=peak_rss_mb(),
               slices=facts["slices_total"], tiles=facts["tiles_total"], timings=res.record["timings"],
               facts={k: v for k, v in facts.items() if k not in ("volumes", "label_volumes", "normalization")})
    print("RESULT " + json.dumps(out))


def model_only(args, context: int, precision: str, tiles: int) -> float:
    tile = engine_tile(args.size, args.size, args.tile, args.overlap)  # the engine's, for planes under a tile
    return model_only_seconds(handle(args, context), args.device, args.batch_size, context, tile, tiles, precision)


def monai(args, volume: Path, context: int):
    """precision -> MONAI's seconds on the 2.5D stack in memory, or None without MONAI."""
    if args.no_monai:
        return None
    if not monai_ref.available():
        print(monai_ref.INSTALL_HINT)
        return None
    h = handle(args, context)
    x = monai_ref.volume_input(volume, h.spec, args.device)
    return lambda p: monai_ref.monai_seconds(x, h, args.device, p, args.tile, args.overlap, args.batch_size)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--size", type=int, default=512, help="in-plane side in voxels")
    ap.add_argument("--depth", type=int, default=400, help="slices (shrink for CPU runs, e.g. 24)")
    ap.add_argument("--contexts", type=int, nargs="+", default=[3, 5], help="2.5D contexts to measure")
    ap.add_argument("--confidence", action="store_true", help="also write the confidence volume")
    ap.add_argument("--uncompressed", action="store_true",
                    help="read a plain .nii (the engine without the single-stream gzip inflate)")
    ap.add_argument("--context", type=int, help=argparse.SUPPRESS)
    ap.add_argument("--volume", type=Path, help=argparse.SUPPRESS)
    add_common_args(ap)
    args = ap.parse_args()
    resolve_batch(args)
    set_threads(args)
    if args.child:
        end_to_end(args)
        return

    from data.synthetic import write_volume

    work = args.workdir or Path(tempfile.mkdtemp(prefix="segpipe-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    ext = ".nii" if args.uncompressed else ".nii.gz"
    volume = work / f"ct_{args.size}x{args.size}x{args.depth}{ext}"
    if not volume.exists():
        t = time.perf_counter()
        write_volume(volume, (args.size, args.size, args.depth), spacing=(0.8, 0.8, 2.5), seed=7)
        print(f"wrote {volume} ({args.size} x {args.size} x {args.depth} int16) in {time.perf_counter() - t:.1f} s")
    for context in args.contexts:
        def child(p: str, context: int = context) -> list[str]:
            return child_command(__file__, args, MODEL_OPTIONS, "--volume", str(volume), "--out",
                                 str(work / f"out_c{context}_{p}"), "--context", str(context), "--precision", p,
                                 *(["--confidence"] if args.confidence else []))

        rounds = measure_rounds(args.repeat, args.precision, child,
                                lambda p, e2e, c=context: model_only(args, c, p, e2e["tiles"]),
                                monai(args, volume, context))
        last = rounds[-1][args.precision[-1]]["result"]
        print(json.dumps({"timings": last["timings"], "facts": last["facts"]}, indent=None))
        reasons = "; ".join(f"{p}: {one['result']['facts']['precision']} "
                            f"({one['result']['facts'].get('precision_reason')})" for p, one in rounds[0].items())
        print(f"volume {args.size}x{args.size}x{args.depth} int16 {ext}, context {context}, "
              f"{args.model}/{args.encoder}, tile {args.tile}, overlap {args.overlap}, batch {args.batch_size}, "
              f"device {last['facts']['device']}, {last['tiles']} tiles, threads {args.threads or 'default'}, "
              f"OMP_WAIT_POLICY {os.environ.get('OMP_WAIT_POLICY')}; {reasons}")
        report.print_rounds("slices", last["slices"], rounds)
        report.print_summary(rounds)
        report.print_peaks(rounds)


if __name__ == "__main__":
    main()
