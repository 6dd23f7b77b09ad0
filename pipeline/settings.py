"""Run settings shared by every input type (scenes and volumes)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from typing import Any, Literal

from .blend import BLEND_WINDOWS
from .errors import ConfigError
from .raster.write import COMPRESSIONS
from .spec import MODEL_STRIDE, ModelSpec


DEFAULT_BATCH = {"cuda": 8, "cpu": 2}


@dataclass(frozen=True)
class RunSettings:
    """How to run a model over one input. ``None`` tile/overlap/context mean "the checkpoint's".

    Only fields that can change an output take part in :meth:`fingerprint` (workers and
    batch size do not), so a re-run with more workers does not redo finished scenes.
    """

    tile: int | None = None
    overlap: int | None = None
    blend: str = "gaussian"
    batch_size: int | None = None  # None: DEFAULT_BATCH for the device (see batch_for)
    device: str = "auto"
    precision: Literal["auto", "fp32", "bf16", "fp16"] = "auto"
    tta: bool = False
    confidence: bool = False
    probabilities: bool = False
    workers: int = 4
    compress: str = "deflate"
    # Volumes (NIfTI) only.
    slice_axis: int | None = None
    context: int | None = None
    series: Literal["error", "each"] | int = "error"

    def __post_init__(self) -> None:
        if self.blend not in BLEND_WINDOWS:
            raise ConfigError(f"blend {self.blend!r} unknown; expected one of {sorted(BLEND_WINDOWS)}")
        if self.compress not in COMPRESSIONS:
            raise ConfigError(f"compress {self.compress!r} unknown; expected one of {COMPRESSIONS}")
        if self.tile is not None and (self.tile <= 0 or self.tile % MODEL_STRIDE):
            raise ConfigError(f"tile {self.tile} must be a positive multiple of {MODEL_STRIDE}")
        if self.overlap is not None and self.overlap < 0:
            raise ConfigError(f"overlap must be >= 0, got {self.overlap}")
        if (self.batch_size is not None and self.batch_size < 1) or self.workers < 1:
            raise ConfigError("batch_size and workers must be >= 1")
        if self.slice_axis is not None and self.slice_axis not in (0, 1, 2):
            raise ConfigError(f"slice_axis must be 0, 1 or 2, got {self.slice_axis}")

    def resolved(self, spec: ModelSpec) -> RunSettings:
        """Fill the checkpoint's recommendations into unset fields and check the result."""
        tile = self.tile or spec.tile
        overlap = spec.overlap if self.overlap is None else self.overlap
        if overlap >= tile:
            raise ConfigError(f"overlap {overlap} must be smaller than the tile {tile}")
        return replace(self, tile=tile, overlap=overlap, context=self.context or spec.context)

    def batch_for(self, device_type: str) -> int:
        """Tiles per model call: the setting, else 8 on a GPU and 2 on the CPU.

        On the CPU a bigger batch is no faster but holds 4x the activations (a resnet34
        U-Net at 512 px tiles: ~1 GB more at batch 8 than at batch 2).
        """
        return self.batch_size or DEFAULT_BATCH.get(device_type, 2)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def fingerprint(self) -> dict[str, Any]:
        """The settings that change outputs (used to decide whether a finished scene is stale)."""
        d = self.to_dict()
        for k in ("batch_size", "workers", "device"):
            d.pop(k)
        return d
