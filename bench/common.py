"""Pieces both benchmarks share: the model under test, warm-up, and the model-only timing."""

from __future__ import annotations

import time


def make_model(kind: str, encoder: str, channels: int, classes: int):
    """The network to time: an smp U-Net, or a 1x1 conv (``tiny``) so the engine dominates."""
    import torch

    torch.manual_seed(0)
    if kind == "tiny":
        return torch.nn.Conv2d(channels, classes, 1)
    from models.unet import build_model

    return build_model(encoder=encoder, in_channels=channels, out_channels=classes).eval()


def warm_up(handle, device: str, batch: int, channels: int, tile: int) -> None:
    """Start the CUDA context and pick kernels once, as a long-running worker already has."""
    import torch

    from pipeline.infer import Predictor, resolve_device

    dev = resolve_device(device)
    if dev.type == "cuda":
        Predictor(handle.module, handle.spec, dev)(torch.rand(batch, channels, tile, tile, device=dev))
        torch.cuda.synchronize()


def model_only_seconds(handle, device: str, batch: int, channels: int, tile: int, tiles: int) -> float:
    """Seconds the predictor alone needs for ``tiles`` tiles, from tensors already on the device."""
    import torch

    from pipeline.infer import Predictor, resolve_device

    dev = resolve_device(device)
    pred = Predictor(handle.module, handle.spec, dev)
    x = torch.rand(batch, channels, tile, tile, device=dev)
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
