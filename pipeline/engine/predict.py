"""Batched model calls: device choice, bf16 autocast and channels_last, flip TTA.

The predictor turns a batch of normalised tiles into per-class probabilities on the
same device; softmax for multi-class models, sigmoid expanded to two channels
(background, class) for single-channel binary models, so the stitcher always blends
K probabilities. A CUDA out-of-memory error splits the batch in halves and retries.

``precision="auto"`` is decided by :func:`pipeline.cpu.choose_precision`: bf16 autocast on
CUDA and on CPUs with native bf16, fp32 on other CPUs. The weights stay fp32 (autocast
casts per op), so one module serves every precision. channels_last (NHWC) is used on every
device: oneDNN's and cuDNN's fast convolutions are NHWC ones, on the CPU for fp32 as well as
bf16 (bench/RESULTS.md, "CPU precision").
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import torch

from ..cpu import choose_precision
from ..errors import ConfigError, is_out_of_memory
from ..options import Precision
from ..spec import ModelSpec

log = logging.getLogger(__name__)


def resolve_device(device: str) -> torch.device:
    """``auto`` picks the first CUDA device when there is one, else the CPU."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except RuntimeError as exc:
        raise ConfigError(f"device {device!r} not understood; expected auto, cpu, cuda or cuda:N") from exc
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise ConfigError(f"device {device!r} asked for but no CUDA device is available; use --device cpu")
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise ConfigError(f"device {device!r} does not exist: {torch.cuda.device_count()} CUDA device(s)")
    elif dev.type != "cpu":
        raise ConfigError(f"device {device!r} not supported; expected auto, cpu, cuda or cuda:N")
    return dev


@dataclass
class Predictor:
    """Callable: (N, C, H, W) normalised float32 on ``device`` -> (N, K, H, W) probabilities.

    After construction ``precision`` is the one that runs (never ``auto``) and
    ``precision_reason`` says why, for the record and the QA report.
    """

    module: torch.nn.Module
    spec: ModelSpec
    device: torch.device
    precision: Precision = "auto"
    tta: bool = False
    oom_splits: int = 0
    precision_reason: str = ""

    def __post_init__(self) -> None:
        self.module = self.module.to(self.device).eval()
        self.precision, self.precision_reason = choose_precision(self.device, self.precision)
        self.channels_last = self.device.type in ("cuda", "cpu")
        if self.channels_last:
            self.module = self.module.to(memory_format=torch.channels_last)

    @property
    def autocast_dtype(self) -> torch.dtype | None:
        return {"bf16": torch.bfloat16, "fp16": torch.float16}.get(self.precision)

    @torch.inference_mode()
    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        try:
            return self._predict(x)
        except Exception as exc:  # noqa: BLE001 - only OOM is handled, everything else re-raised
            if not is_out_of_memory(exc) or x.shape[0] == 1:
                raise
        self.oom_splits += 1
        log.warning("device out of memory on a batch of %d tiles; retrying in halves", x.shape[0])
        if self.device.type == "cuda":
            torch.cuda.empty_cache()
        half = x.shape[0] // 2
        return torch.cat([self(x[:half]), self(x[half:])])

    def _predict(self, x: torch.Tensor) -> torch.Tensor:
        views = [(), (3,), (2,), (2, 3)] if self.tta else [()]
        total = None
        for dims in views:
            xi = torch.flip(x, dims) if dims else x
            p = self._probs(xi)
            p = torch.flip(p, dims) if dims else p
            total = p if total is None else total.add_(p)
        return total.div_(len(views)) if len(views) > 1 else total

    def _probs(self, x: torch.Tensor) -> torch.Tensor:
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        dtype = self.autocast_dtype
        with torch.autocast(self.device.type, dtype=dtype or torch.float32, enabled=dtype is not None):
            logits = self.module(x)
        logits = logits.float()
        if self.spec.activation == "sigmoid":
            p = torch.sigmoid(logits[:, :1])
            return torch.cat([1.0 - p, p], dim=1)
        return torch.softmax(logits, dim=1)
