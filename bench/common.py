"""Pieces both benchmarks share: options, the model under test, warm-up, the model-only timing,
and the end-to-end child process with its repeats at each precision."""

from __future__ import annotations

import argparse
import json
import os
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
    ap.add_argument("--precision", nargs="+", choices=["auto", "fp32", "bf16", "fp16"], default=["fp32", "auto"],
                    help="precisions measured side by side (default: fp32 auto)")
    ap.add_argument("--threads", type=int, default=None,
                    help="torch.set_num_threads in every process (default: torch's, one per physical core)")
    ap.add_argument("--no-monai", action="store_true", help="skip MONAI's sliding_window_inference reference")
    ap.add_argument("--repeat", type=int, default=1,
                    help="rounds; each measures every precision end to end, model-only and MONAI back to back")
    ap.add_argument("--workdir", type=Path, default=None)
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--out", type=Path, help=argparse.SUPPRESS)


def child_command(script: str, args, options: Sequence[str], *extra: str) -> list[str]:
    """The command line that reruns ``script`` as the end-to-end child with ``args``' ``options``."""
    cmd = [sys.executable, script, "--child", *extra]
    for k in options:
        cmd += [f"--{k.replace('_', '-')}", str(getattr(args, k))]
    if args.threads:
        cmd += ["--threads", str(args.threads)]
    return cmd


def set_threads(args) -> None:
    """``--threads N``: torch's intra-op threads for this process (the engine leaves torch's default)."""
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)


def run_child(cmd: list[str]) -> dict:
    """One end-to-end child run; it prints one ``RESULT {json}`` line. A failed child ends the benchmark."""
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    line = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
    if proc.returncode or not line:
        sys.exit(f"end-to-end run failed:\n{proc.stderr[-4000:]}")
    return json.loads(line[0][7:])


def measure_rounds(repeat: int, precisions: Sequence[str], child: Callable[[str], list[str]],
                   model_only: Callable[[str, dict], float],
                   monai: Callable[[str], float] | None) -> list[dict[str, dict]]:
    """``repeat`` rounds; in each, every precision end to end (child process), model-only and MONAI.

    The measurements of one round are seconds apart, so the in-round ratios (end-to-end /
    model-only, bf16 / fp32) see the same machine; a noisy machine shows up as spread
    between rounds. Returns per round ``{precision: {e2e_s, model_s, monai_s, load, result}}``.
    """
    rounds = []
    for _ in range(repeat):
        one = {}
        for p in precisions:
            load = os.getloadavg()[0]
            e2e = run_child(child(p))
            mo = model_only(p, e2e)
            mon = monai(p) if monai is not None else None
            one[p] = dict(e2e_s=e2e["seconds"], model_s=mo, monai_s=mon, load=load, result=e2e)
        rounds.append(one)
    return rounds


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


def warm_up(handle, device: str, batch: int, channels: int, tile: tuple[int, int], precision: str = "auto") -> None:
    """Run the model once first, as a long-running worker already has.

    On a GPU this starts the CUDA context and picks kernels; on the CPU the first call
    builds oneDNN's primitives (~0.4 s for a resnet18 U-Net at batch 2 on the 2-core machine),
    a cost a batch flow pays once per process, not once per scene.
    """
    import torch

    from pipeline.engine import Predictor, resolve_device

    dev = resolve_device(device)
    Predictor(handle.module, handle.spec, dev, precision)(torch.rand(batch, channels, *tile, device=dev))
    if dev.type == "cuda":
        torch.cuda.synchronize()


def model_only_seconds(handle, device: str, batch: int, channels: int, tile: tuple[int, int], tiles: int,
                       precision: str = "auto") -> float:
    """Seconds the predictor alone needs for ``tiles`` tiles of ``tile`` (h, w), from tensors on the device."""
    import torch

    from pipeline.engine import Predictor, resolve_device

    dev = resolve_device(device)
    pred = Predictor(handle.module, handle.spec, dev, precision)
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
