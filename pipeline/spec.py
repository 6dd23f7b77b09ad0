"""What the engine needs to know about a model: its input and output contract.

A checkpoint (``models/checkpoint.py``) stores these as JSON metadata; the engine only
sees the frozen dataclasses below, so it never depends on how a model was trained.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Literal

from .errors import CheckpointError

NormKind = Literal["none", "meanstd", "scale", "percentile", "ct_window", "zscore"]
NORM_KINDS: tuple[str, ...] = ("none", "meanstd", "scale", "percentile", "ct_window", "zscore")

# Networks with 5 down-sampling stages (smp U-Net) need H and W divisible by 2**5.
MODEL_STRIDE = 32


@dataclass(frozen=True)
class Normalization:
    """How raw input values become model input. Applied identically in training and inference.

    kinds:
        none: values as float32.
        meanstd: ``(x - mean[c]) / std[c]`` per channel (fixed statistics).
        scale: ``x * factor + offset`` (e.g. factor=1/10000 for Sentinel-2 reflectance).
        percentile: per band, clip to this scene's [low, high] percentiles of valid pixels
            and scale to [0, 1] (statistics from a decimated read, never the whole scene).
        ct_window: clip to [window_low, window_high] then scale to [0, 1].
        zscore: per volume, clip to [low, high] percentiles then z-score, statistics taken
            inside the nonzero mask when ``nonzero`` is set.
    """

    kind: NormKind = "none"
    mean: tuple[float, ...] = ()
    std: tuple[float, ...] = ()
    factor: float = 1.0
    offset: float = 0.0
    low: float = 0.5
    high: float = 99.5
    window_low: float = -1000.0
    window_high: float = 1000.0
    nonzero: bool = False

    def __post_init__(self) -> None:
        if self.kind not in NORM_KINDS:
            raise CheckpointError(f"normalization kind {self.kind!r} unknown; expected one of {NORM_KINDS}")
        if self.kind == "meanstd":
            if not self.mean or len(self.mean) != len(self.std):
                raise CheckpointError("meanstd normalization needs mean and std of equal, non-zero length")
            if any(s <= 0 for s in self.std):
                raise CheckpointError(f"meanstd normalization std must be > 0, got {self.std}")
        if self.kind in ("percentile", "zscore") and not 0 <= self.low < self.high <= 100:
            raise CheckpointError(f"percentiles must satisfy 0 <= low < high <= 100, got {self.low}, {self.high}")
        if self.kind == "ct_window" and not self.window_low < self.window_high:
            raise CheckpointError(f"CT window must have low < high, got {self.window_low}, {self.window_high}")

    @property
    def per_image(self) -> bool:
        """True when the statistics come from each image (need a pass over it first)."""
        return self.kind in ("percentile", "zscore")


@dataclass(frozen=True)
class ModelSpec:
    """Input and output contract of a segmentation model.

    Attributes:
        in_channels: channels the network takes (= len(bands) * context).
        bands: 1-based source band indices, in model channel order (GDAL numbering).
        context: 2.5D neighbouring slices stacked as channels (volumes); 1 for 2D.
        normalization: how raw values become model input.
        class_names: one name per label value; label i is class_names[i].
        class_colors: RGB per label value, for colour tables and overlays.
        activation: softmax over channels, or sigmoid for a single-channel binary model
            (then class_names has two entries: background and the class).
        tile: recommended tile size in pixels (multiple of MODEL_STRIDE).
        overlap: recommended overlap in pixels (about the receptive field).
    """

    in_channels: int
    bands: tuple[int, ...]
    class_names: tuple[str, ...]
    class_colors: tuple[tuple[int, int, int], ...] = ()
    normalization: Normalization = field(default_factory=Normalization)
    context: int = 1
    activation: Literal["softmax", "sigmoid"] = "softmax"
    tile: int = 512
    overlap: int = 64

    def __post_init__(self) -> None:
        if self.in_channels < 1:
            raise CheckpointError(f"in_channels must be >= 1, got {self.in_channels}")
        if len(self.bands) * self.context != self.in_channels:
            raise CheckpointError(
                f"bands {self.bands} x context {self.context} != in_channels {self.in_channels}"
            )
        if any(b < 1 for b in self.bands):
            raise CheckpointError(f"bands are 1-based GDAL band numbers, got {self.bands}")
        if self.context < 1 or self.context % 2 == 0:
            raise CheckpointError(f"context must be an odd number >= 1, got {self.context}")
        if len(self.class_names) < 2:
            raise CheckpointError(f"need at least 2 class names (background included), got {self.class_names}")
        if self.class_colors and len(self.class_colors) != len(self.class_names):
            raise CheckpointError(
                f"{len(self.class_colors)} class colours for {len(self.class_names)} classes"
            )
        if self.activation == "sigmoid" and len(self.class_names) != 2:
            raise CheckpointError("a sigmoid (single-channel) model has exactly 2 classes: background and one")
        norm = self.normalization
        if norm.kind == "meanstd" and len(norm.mean) not in (1, len(self.bands)):
            raise CheckpointError(f"{len(norm.mean)} mean values for {len(self.bands)} bands")
        if self.tile % MODEL_STRIDE or self.tile <= 0:
            raise CheckpointError(f"tile {self.tile} must be a positive multiple of {MODEL_STRIDE}")
        if not 0 <= self.overlap < self.tile:
            raise CheckpointError(f"overlap {self.overlap} must be in [0, tile={self.tile})")

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def out_channels(self) -> int:
        """Channels the network emits: 1 for sigmoid, one per class for softmax."""
        return 1 if self.activation == "sigmoid" else self.num_classes

    def colors(self) -> tuple[tuple[int, int, int], ...]:
        """Class colours, falling back to a fixed palette where the checkpoint gave none."""
        return self.class_colors or default_colors(self.num_classes)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ModelSpec:
        try:
            d = dict(d)
            d["normalization"] = Normalization(**_tuples(d.get("normalization") or {}))
            d["bands"] = tuple(d["bands"])
            d["class_names"] = tuple(d["class_names"])
            d["class_colors"] = tuple(tuple(c) for c in d.get("class_colors") or ())
            return cls(**d)
        except (KeyError, TypeError) as exc:
            raise CheckpointError(f"model spec is incomplete or malformed: {exc}") from exc


def _tuples(d: dict[str, Any]) -> dict[str, Any]:
    return {k: tuple(v) if isinstance(v, list) else v for k, v in d.items()}


_PALETTE = (
    (0, 0, 0), (31, 119, 180), (44, 160, 44), (214, 39, 40), (255, 127, 14), (148, 103, 189),
    (140, 86, 75), (227, 119, 194), (127, 127, 127), (188, 189, 34), (23, 190, 207),
)


def default_colors(n: int) -> tuple[tuple[int, int, int], ...]:
    """A fixed, distinguishable palette (black background first), repeated past its length."""
    return tuple(_PALETTE[i % len(_PALETTE)] for i in range(n))
