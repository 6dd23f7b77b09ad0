"""Pieces both benchmarks share: options, the model under test, warm-up, the model-only timing,
and the end-to-end child process with its repeats."""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import pipeline  # noqa: F401 - before torch: its CPU allocation settings (pipeline/__init__.py)


# Options both benchmarks take and hand on to their end-to-end child.
MODEL_OPTIONS = ("encoder", "model", "tile", "overlap", "batch_size", "device", "size")


def add_common_args(ap: argparse.ArgumentParser) -> None:
    """The model, tiling, device and repeat options of both benchmarks."""
    ap.add_argument("--encoder", default="resnet34")
    ap.add_argument("--model", choices=["unet", "tiny"], default="unet")
    ap.add_argument("--tile", type=int, default=512)
    ap.add_argument("--overlap", type=int, default=64)
    ap.add_argument("--batch-size", type=int, default=None, help="default: the engine's for the device")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--repeat", type=int, default=1, help="end-to-end + model-only pairs (each measured)")
    ap.add_argument("--workdir", type=Path, default=None)
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--out", type=Path, help=argparse.SUPPRESS)


def child_command(script: str, args, options: Sequence[str], *extra: str) -> list[str]:
    """The command line that reruns ``script`` as the end-to-end child with ``args``' ``options``."""
    cmd = [sys.executable, script, "--child", *extra]
    for k in options:
        cmd += [f"--{k.replace('_', '-')}", str(getattr(args, k))]
    return cmd


def measure_pairs(cmd: list[str], repeat: int,
                  model_only: Callable[[dict], float]) -> tuple[list[tuple[float, float]], float, dict]:
    """``repeat`` end-to-end child runs, each followed by the model-only timing of the same work.

    Returns the (end-to-end s, model-only s) pairs, the highest peak RSS and the last child's
    result. The child prints one ``RESULT {json}`` line; a failed child ends the benchmark.
    """
    runs, peak, e2e = [], 0.0, {}
    for _ in range(repeat):
        proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
        line = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
        if proc.returncode or not line:
            sys.exit(f"end-to-end run failed:\n{proc.stderr[-4000:]}")
        e2e = json.loads(line[0][7:])
        runs.append((e2e["seconds"], model_only(e2e)))
        peak = max(peak, e2e["peak_rss_mb"])
    return runs, peak, e2e


def resolve_batch(args) -> None:
    """``--batch-size`` left out: the engine's default for the device (8 on a GPU, 2 on the CPU)."""
    if args.batch_size is None:
        from pipeline.engine import resolve_device
        from pipeline.options import RunOptions

        args.batch_size = RunOptions().batch_for(resolve_device(args.device).type)


def make_model(kind: str, encoder: str, channels: int, classes: int):
    """The network to time: an smp U-Net, or a 1x1 conv (``tiny``) so the engine dominates."""
    import torch

    torch.manual_seed(0)
    if kind == "tiny":
        return torch.nn.Conv2d(channels, classes, 1)
    from models.unet import build_model

    return build_model(encoder=encoder, in_channels=channels, out_channels=classes).eval()


def warm_up(handle, device: str, batch: int, channels: int, tile: tuple[int, int]) -> None:
    """Run the model once first, as a long-running worker already has.

    On a GPU this starts the CUDA context and picks kernels; on the CPU the first call
    builds oneDNN's primitives (~0.4 s for a resnet18 U-Net at batch 2 on the 2-core machine),
    a cost a batch flow pays once per process, not once per scene.
    """
    import torch

    from pipeline.engine import Predictor, resolve_device

    dev = resolve_device(device)
    Predictor(handle.module, handle.spec, dev)(torch.rand(batch, channels, *tile, device=dev))
    if dev.type == "cuda":
        torch.cuda.synchronize()


def model_only_seconds(handle, device: str, batch: int, channels: int, tile: tuple[int, int], tiles: int) -> float:
    """Seconds the predictor alone needs for ``tiles`` tiles of ``tile`` (h, w), from tensors on the device."""
    import torch

    from pipeline.engine import Predictor, resolve_device

    dev = resolve_device(device)
    pred = Predictor(handle.module, handle.spec, dev)
    x = torch.rand(batch, channels, *tile, device=dev)
    for _ in range(2):
        pred(x)
    if dev.type == "cuda":
        torch.cuda.synchronize()
    t = time.perf_counter()
    n = 0
    while n < tiles:
        b = min(batch, tiles - n)
        pred(x[:b]).argmax(1)  # the model's own output reduction, as the stitcher does at minimum
        n += b
    if dev.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - t


def engine_tile(height: int, width: int, tile: int, overlap: int) -> tuple[int, int]:
    """The (h, w) the engine feeds the model for an image of this size (smaller images: a smaller tile)."""
    from pipeline.tiling import TileGrid

    g = TileGrid.build(height, width, tile, overlap)
    return g.tile_h, g.tile_w


def print_rates(unit: str, amount: float, runs: list[tuple[float, float]], peak_rss_mb: float) -> None:
    """Rates and ratio of each repeat (end-to-end and model-only back to back), then the median ratio.

    ``amount`` is what one run processes in ``unit`` (Mpix, slices); ``runs`` holds
    (end-to-end seconds, model-only seconds) pairs. Each ratio comes from two measurements
    taken seconds apart, so a noisy machine shows up as spread between repeats rather than
    as one lucky or unlucky figure.
    """
    ratios = []
    for i, (e2e, mo) in enumerate(runs, 1):
        tag = f" [{i}/{len(runs)}]" if len(runs) > 1 else ""
        ratios.append(mo / e2e)
        print(f"model-only  {amount / mo:8.2f} {unit}/s  ({mo:.1f} s){tag}")
        print(f"end-to-end  {amount / e2e:8.2f} {unit}/s  ({e2e:.1f} s){tag}")
        print(f"ratio       {mo / e2e:8.3f}{tag}")
    if len(runs) > 1:
        ratios.sort()
        print(f"ratio       {ratios[len(ratios) // 2]:8.3f} median of {len(runs)} "
              f"(min {ratios[0]:.3f}, max {ratios[-1]:.3f})")
    print(f"peak RSS    {peak_rss_mb:8.0f} MiB (end-to-end process)")
