"""Training settings: one pydantic model at the edge (CLI, flow parameters, stored in the card).

A bad value fails when the config is built, naming the field. Everything inside the
training code reads this frozen object; nothing is read from the environment.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from pipeline.errors import ConfigError
from pipeline.spec import MODEL_STRIDE


class AugmentConfig(BaseModel):
    """Training-time augmentation (never applied to validation).

    Probabilities are per tile. Brightness/contrast and noise act on the *normalised*
    values (about unit variance), so their limits are in standard deviations.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    enabled: bool = True
    flips: bool = True  # the 8 symmetries of the square (flips + 90-degree rotations)
    scale: tuple[float, float] = (0.8, 1.25)  # zoom range; (1, 1) disables it
    scale_p: float = Field(0.3, ge=0, le=1)
    brightness: float = Field(0.1, ge=0, le=2)
    contrast: float = Field(0.1, ge=0, le=1)
    brightness_p: float = Field(0.3, ge=0, le=1)
    noise_std: float = Field(0.05, ge=0, le=1)
    noise_p: float = Field(0.2, ge=0, le=1)


class TrainConfig(BaseModel):
    """Everything ``segpipe train`` needs; stored in the checkpoint and the model card.

    ``steps`` is the total number of optimizer steps (= ``epochs * steps_per_epoch`` when
    not given). Validation runs after every epoch through the production engine.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    data: Path
    out: Path
    val: Path | None = None  # a folder or manifest of held-out pairs; else split off `data`
    val_split: float = Field(0.2, ge=0, lt=1)
    arch: str = "Unet"
    encoder: str = "resnet34"
    encoder_depth: int = Field(5, ge=3, le=5)
    decoder_channels: tuple[int, ...] | None = None
    encoder_weights: Path | None = None  # a local ResNet state dict; never downloaded
    epochs: int = Field(10, ge=1)
    steps_per_epoch: int = Field(100, ge=1)
    steps: int | None = Field(None, ge=1)
    batch_size: int = Field(8, ge=1)
    tile: int = Field(256, ge=MODEL_STRIDE)  # training tile (random crops)
    infer_tile: int | None = Field(None, ge=MODEL_STRIDE)  # stored in the spec; default max(tile, 256)
    overlap: int | None = Field(None, ge=0)  # stored in the spec; default min(64, infer_tile // 4)
    lr: float = Field(1e-3, gt=0, le=1)
    weight_decay: float = Field(1e-4, ge=0)
    warmup_steps: int = Field(20, ge=0)
    min_lr_ratio: float = Field(0.02, ge=0, le=1)
    grad_clip: float = Field(1.0, gt=0)
    dice_weight: float = Field(1.0, ge=0)
    ce_weight: float = Field(1.0, ge=0)
    focal_gamma: float = Field(0.0, ge=0, le=5)  # > 0: focal loss instead of plain cross-entropy
    class_balance: float = Field(0.5, ge=0, le=1)  # 0: tiles at random; 1: classes drawn uniformly
    patience: int = Field(5, ge=1)  # epochs without a better validation mean IoU before stopping
    seed: int = 0
    device: str = "auto"
    precision: Literal["auto", "fp32", "bf16"] = "auto"  # auto: bf16 autocast on a GPU and on CPUs with native bf16
    bands: tuple[int, ...] | None = None
    class_names: tuple[str, ...] | None = None
    classes: int | None = Field(None, ge=2)
    class_colors: tuple[tuple[int, int, int], ...] | None = None
    norm: Literal["meanstd", "ct_window", "zscore"] | None = None  # None: meanstd for scenes, ct_window for volumes
    ct_window: tuple[float, float] = (-200.0, 800.0)
    context: int = Field(1, ge=1)  # volumes: 2.5D slices as channels (odd)
    slice_axis: int | None = Field(None, ge=0, le=2)  # volumes: None = coarsest spacing, as inference
    stats_samples: int = Field(200_000, ge=1000)
    augment: AugmentConfig = AugmentConfig()
    val_max_scenes: int | None = Field(None, ge=1)
    workers: int = Field(2, ge=1)
    resume: Path | None = None  # a checkpoint (its .state.safetensors sibling is used) or a state file

    @model_validator(mode="after")
    def _check(self) -> TrainConfig:
        if self.tile % MODEL_STRIDE:
            raise ValueError(f"tile {self.tile} must be a multiple of {MODEL_STRIDE}")
        if self.infer_tile is not None and self.infer_tile % MODEL_STRIDE:
            raise ValueError(f"infer_tile {self.infer_tile} must be a multiple of {MODEL_STRIDE}")
        if self.overlap is not None and self.overlap >= self.spec_tile:
            raise ValueError(f"overlap {self.overlap} must be smaller than the inference tile {self.spec_tile}")
        if self.context % 2 == 0:
            raise ValueError(f"context must be odd, got {self.context}")
        if self.class_names and self.classes and len(self.class_names) != self.classes:
            raise ValueError(f"{len(self.class_names)} class names for {self.classes} classes")
        if self.ct_window[0] >= self.ct_window[1]:
            raise ValueError(f"ct_window {self.ct_window} must have low < high")
        return self

    @property
    def spec_tile(self) -> int:
        """Recommended inference tile: bigger than the training crop gives more context per call."""
        return self.infer_tile or max(self.tile, 256)

    @property
    def spec_overlap(self) -> int:
        return self.overlap if self.overlap is not None else min(64, self.spec_tile // 4)

    @property
    def total_steps(self) -> int:
        return self.steps or self.epochs * self.steps_per_epoch

    @property
    def arch_kwargs(self) -> dict:
        """smp arguments beyond encoder/channels, stored in the checkpoint to rebuild the net."""
        kw: dict = {}
        if self.encoder_depth != 5:
            kw["encoder_depth"] = self.encoder_depth
            # The *last* entries of smp's default: the full-resolution block stays at 16 channels,
            # which is where a shallow U-Net spends its compute.
            kw["decoder_channels"] = list(self.decoder_channels or (256, 128, 64, 32, 16)[-self.encoder_depth:])
        elif self.decoder_channels:
            kw["decoder_channels"] = list(self.decoder_channels)
        return kw


def make_config(**fields) -> TrainConfig:
    """Build a :class:`TrainConfig`, turning pydantic's error into one ``ConfigError`` line."""
    try:
        return TrainConfig(**{k: v for k, v in fields.items() if v is not None})
    except ValidationError as exc:
        msg = "; ".join(f"{'.'.join(map(str, e['loc'])) or 'config'}: {e['msg']}" for e in exc.errors()[:4])
        raise ConfigError(f"bad training settings: {msg}") from exc
