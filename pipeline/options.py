"""Run options, declared once: the pydantic model every entry point validates against.

``segpipe run``/``batch`` generate their flags from :class:`RunOptions` (``flows.cli_options``),
a job file is a :class:`~flows.config.JobConfig` (a subclass), a CSV manifest row overrides
fields of it, and the engine takes the validated, frozen model as it is. So a value the job
file accepts is a value the engine runs: bounds and choices are checked here, once, at load
time, naming the field.

``None`` for tile, overlap and context means "the checkpoint's" (:meth:`RunOptions.resolved`).
Only fields that can change an output take part in :meth:`RunOptions.fingerprint`, so a
re-run with more workers or another batch size does not redo finished scenes.
"""

from __future__ import annotations

import json
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from .errors import ConfigError
from .spec import MODEL_STRIDE, ModelSpec
from .tiling.blend import BLEND_WINDOWS

BlendName = Literal[tuple(sorted(BLEND_WINDOWS))]  # type: ignore[valid-type]
Compress = Literal["deflate", "zstd"]
COMPRESSIONS: tuple[str, ...] = ("deflate", "zstd")
Precision = Literal["auto", "fp32", "bf16", "fp16"]
SeriesPolicy = Literal["error", "each"]
NodataRule = Literal["all-bands", "any-band"]

DEFAULT_BATCH = {"cuda": 8, "cpu": 2}
# Fields that never change an output: left out of the fingerprint.
_NOT_OUTPUT = ("batch_size", "workers", "device")
# What a record made before a field existed was made with (a default that changed).
_LEGACY = {"nodata_rule": "any-band"}


class RunOptions(BaseModel):
    """How to run a model over one input (``segpipe run`` options, dashes as underscores)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    tile: int | None = Field(None, ge=MODEL_STRIDE, le=8192,
                             description="tile size in pixels, multiple of 32 (default: the checkpoint's)")
    overlap: int | None = Field(None, ge=0, le=4096,
                                description="overlap in pixels, about the receptive field (default: the checkpoint's)")
    blend: BlendName = Field("gaussian", description="tile blending window")
    batch_size: int | None = Field(None, ge=1, le=1024,
                                   description="tiles per model call (default: 8 on a GPU, 2 on the CPU)")
    device: str = Field("auto", pattern=r"^(auto|cpu|cuda(:\d+)?)$", description="auto | cpu | cuda | cuda:N")
    precision: Precision = Field("auto", description="auto = bf16 autocast on a GPU and on CPUs with AMX-BF16/"
                                                       "AVX512-BF16, else fp32")
    tta: bool = Field(False, description="flip test-time augmentation (4x the model work)")
    confidence: bool = Field(False, description="also write max class probability (uint8, /254)")
    probabilities: bool = Field(False, description="also write per-class probabilities (uint8, /254)")
    workers: int = Field(4, ge=1, le=64, description="reader threads")
    compress: Compress = Field("deflate", description="output compression")
    nodata_rule: NodataRule = Field("all-bands", description="scenes: a pixel is nodata where all its bands hold "
                                    "the nodata value (GDAL's dataset mask) or where any band does")
    slice_axis: Literal[0, 1, 2] | None = Field(None, description="volumes: axis to slice (default: coarsest)")
    context: int | None = Field(None, ge=1, le=31, description="volumes: 2.5D slices per input (default: checkpoint's)")
    volume: int | None = Field(None, ge=0, description="volumes: which volume of a 4D series to segment")
    series: SeriesPolicy | None = Field(None, description="volumes: policy for a 4D series")
    co: dict[str, str] = Field(default_factory=dict,
                               description="GDAL creation option of the output COGs, KEY=VALUE (repeatable)")
    vectors: bool = Field(False, description="also write NAME_vectors.gpkg: one polygon per connected region")
    vector_classes: tuple[str, ...] | None = Field(
        None, description="classes to vectorise, names or ids (repeatable; default: all but class 0)")
    vector_simplify: float = Field(0.0, ge=0, le=1000, description="vectors: simplification tolerance in pixels")
    vector_min_area: float = Field(0.0, ge=0, description="vectors: leave out regions smaller than this, in m2 "
                                                          "(pixels for a mask without a CRS)")

    def __init__(self, **data: Any) -> None:
        """Direct construction (Python callers) raises the project's one-line ConfigError."""
        try:
            super().__init__(**data)
        except ValidationError as exc:
            raise ConfigError(f"invalid run options: {describe(exc)}") from None

    @model_validator(mode="before")
    @classmethod
    def _series_index(cls, data: Any) -> Any:
        """``series=N`` (a volume index, as records store it) means ``volume=N``."""
        if isinstance(data, dict) and isinstance(data.get("series"), int) and not isinstance(data["series"], bool):
            data = {**data, "volume": data["series"], "series": None}
        return data

    @field_validator("co", mode="before")
    @classmethod
    def _creation_options(cls, v: Any) -> dict[str, str]:
        """``KEY=VALUE`` strings (the CLI, a CSV cell) or a mapping (a job file), checked against GDAL's COG driver."""
        from .sinks.geotiff import creation

        return creation.check(creation.parse(v))

    @field_validator("vector_classes", mode="before")
    @classmethod
    def _class_list(cls, v: Any) -> Any:
        """A CSV cell or one flag may list several classes: ``water,built``."""
        if isinstance(v, str):
            v = [v]
        if isinstance(v, (list, tuple)):
            v = tuple(s.strip() for item in v for s in str(item).split(",") if s.strip())
        return v

    @field_validator("tile")
    @classmethod
    def _tile_stride(cls, v: int | None) -> int | None:
        if v is not None and v % MODEL_STRIDE:
            raise ValueError(f"must be a multiple of {MODEL_STRIDE} (the U-Net's stride), got {v}")
        return v

    @model_validator(mode="after")
    def _consistent(self) -> RunOptions:
        if self.tile is not None and self.overlap is not None and self.overlap >= self.tile:
            raise ValueError(f"overlap {self.overlap} must be smaller than the tile {self.tile}")
        if self.volume is not None and self.series == "each":
            raise ValueError(f"volume {self.volume} and series 'each' contradict each other; give one")
        return self

    # -- derived -----------------------------------------------------------------------------
    @property
    def series_policy(self) -> SeriesPolicy | int:
        """What to do with a 4D series: a volume index, ``each`` or ``error`` (the default)."""
        return self.volume if self.volume is not None else (self.series or "error")

    def resolved(self, spec: ModelSpec) -> RunOptions:
        """The checkpoint's recommendations filled into unset fields, checked together."""
        tile = self.tile or spec.tile
        overlap = spec.overlap if self.overlap is None else self.overlap
        if overlap >= tile:
            raise ConfigError(f"overlap {overlap} must be smaller than the tile {tile}")
        return self.model_copy(update=dict(tile=tile, overlap=overlap, context=self.context or spec.context))

    def batch_for(self, device_type: str) -> int:
        """Tiles per model call: the option, else 8 on a GPU and 2 on the CPU.

        On the CPU a bigger batch is no faster but holds 4x the activations (a resnet34
        U-Net at 512 px tiles: ~1 GB more at batch 8 than at batch 2).
        """
        return self.batch_size or DEFAULT_BATCH.get(device_type, 2)

    def with_overrides(self, overrides: dict[str, Any], where: str) -> RunOptions:
        """These options with some fields replaced (a CSV manifest row), validated again."""
        if not overrides:
            return self
        return validate(type(self), {**self.model_dump(), **overrides}, where)

    def to_dict(self) -> dict[str, Any]:
        """The engine's settings as ``record.json`` keeps them (``series``: the policy or index)."""
        d = {k: getattr(self, k) for k in RUN_OPTION_NAMES if k not in ("volume", "series")}
        d["series"] = self.series_policy
        return d

    def fingerprint(self) -> dict[str, Any]:
        """The settings that change outputs (used to decide whether a finished scene is stale)."""
        return {k: v for k, v in self.to_dict().items() if k not in _NOT_OUTPUT}

    def same_outputs(self, recorded: dict[str, Any] | None) -> bool:
        """Whether a record's fingerprint is this one's. A field the record predates counts as
        what it was made with: the default then (``_LEGACY``), else the default now."""
        if not isinstance(recorded, dict):
            return False
        mine = self.fingerprint()
        defaults = {k: _LEGACY[k] if k in _LEGACY else f.get_default(call_default_factory=True)
                    for k, f in type(self).model_fields.items()}
        old = {k: recorded.get(k, defaults.get(k)) for k in mine}
        return _jsonish(old) == _jsonish(mine)


RUN_OPTION_NAMES: tuple[str, ...] = tuple(RunOptions.model_fields)


def _jsonish(value: Any) -> Any:
    """Compare as a record stores it (tuples become lists, etc.)."""
    return json.loads(json.dumps(value, default=str, sort_keys=True))


def validate(model: type[BaseModel], data: dict[str, Any], where: str) -> Any:
    """``model.model_validate(data)`` with a one-line ConfigError naming ``where`` and the fields."""
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(f"{where}: invalid job configuration: {describe(exc)}") from None


def describe(exc: ValidationError) -> str:
    """The first few problems of a validation error, one clause each: ``field: message (got x)``."""
    return "; ".join(f"{'.'.join(map(str, e['loc'])) or '(top)'}: {e['msg']}" + _got(e) for e in exc.errors()[:4])


def _got(error: Any) -> str:
    return "" if error.get("type") == "missing" else f" (got {error.get('input')!r})"
