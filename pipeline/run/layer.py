"""What every input's run stands on, scene or volume: streaming one image through the engine
to its sinks, and ending the run with its QA report and ``record.json``.

A run (``run.geotiff`` / ``run.nifti``) opens its input, locks its folder and stages a fresh
one (``run.folder``: the last good outputs survive a failed run), and for each
image (a scene, or each volume of a file) calls :func:`stream`: the engine in this thread,
the reader and writer threads around it, the sinks fed every band and the best-effort
observers (QA) after them. The outputs are finished by the run once the input is known to be
whole; :func:`conclude` then writes the QA report(s) and, last, the record, and the staged
folder is swapped into place.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import torch

from ..engine import Engine, EngineStats, NormStats, PlaneSource, Predictor, ProgressFn, Stitcher
from ..errors import CheckpointError
from ..engine.loop import InputObserver
from ..files import write_json_atomic
from ..options import RunOptions
from ..readers.vsi import InputPath
from ..sinks import BandWriter, SinkSet, Watched
from ..spec import ModelSpec
from ..threads import StopToken
from ..tiling import TileGrid
from ..peakmem import scene_facts
from .record import RECORD_NAME


class ModelHandle(Protocol):
    """What the engine needs of a loaded checkpoint (``models.checkpoint.LoadedModel`` is one)."""

    module: torch.nn.Module
    spec: ModelSpec
    sha256: str
    path: Path


@dataclass
class SceneResult:
    """What a finished input produced."""

    input: InputPath
    scene_dir: Path
    outputs: dict[str, Path]
    record: dict[str, Any]
    warnings: list[str] = field(default_factory=list)

    @property
    def record_path(self) -> Path:
        return self.scene_dir / RECORD_NAME

    def moved(self, scene_dir: Path) -> SceneResult:
        """The result once its folder has been swapped into place at ``scene_dir``."""
        outputs = {k: scene_dir / p.name for k, p in self.outputs.items()}
        return SceneResult(self.input, scene_dir, outputs, self.record, self.warnings)


@dataclass
class Streamed:
    """What streaming one image produced, before its sinks are finished."""

    stats: EngineStats
    writer: BandWriter

    def timings(self) -> dict[str, float]:
        return {**self.stats.timings, "write_s": self.writer.busy_s, "copy_wait_s": self.writer.copy_wait_s}


def stream(predictor: Predictor, source: PlaneSource, grid: TileGrid, norm: NormStats, options: RunOptions,
           sinks: SinkSet, observers: Sequence[Watched], *, nodata: int, label_dtype: torch.dtype,
           confidence: bool, reducers: Sequence[Any] = (), progress: ProgressFn | None = None,
           input_observer: InputObserver | None = None) -> Streamed:
    """Segment one image into ``sinks`` (not finished yet); on any failure every sink is aborted.

    ``confidence``: produce the confidence band even when no sink consumes it (QA does).
    """
    stop = StopToken()
    stitcher = Stitcher(grid, predictor.spec.num_classes, options.blend, predictor.device, nodata=nodata,
                        label_dtype=label_dtype, confidence=confidence or "confidence" in sinks.consumes,
                        probabilities="probabilities" in sinks.consumes, reducers=reducers)
    writer = BandWriter(sinks, observers, stop)
    engine = Engine(predictor, source, grid, norm, batch_size=options.batch_for(predictor.device.type),
                    stitcher=stitcher, stop=stop, progress=progress, input_observer=input_observer)
    try:
        stats = engine.run(writer.put)
        writer.close()
    except BaseException:
        stop.set()
        writer.close(abort=True)
        sinks.abort()
        raise
    return Streamed(stats, writer)


def finish_sinks(sinks: SinkSet, before: Callable[[], None] | None = None) -> tuple[dict[str, Path], float]:
    """Run ``before`` (e.g. the input's last check), then finish every sink; abort them all on failure."""
    t = time.perf_counter()
    try:
        if before is not None:
            before()
        outputs = sinks.finish()
    except BaseException:
        sinks.abort()
        raise
    return outputs, time.perf_counter() - t


def check_model_kind(model: ModelHandle, input_path: Path, kind: str) -> None:
    """A volume checkpoint given a scene, or a scene checkpoint given a volume: one line naming both.

    A 2.5D checkpoint (context > 1) is a volume model; beyond that, a checkpoint made by
    ``segpipe train`` says what it was trained on (``training.input_kind``).
    """
    meta = getattr(model, "metadata", None) or {}
    trained = (meta.get("training") or {}).get("input_kind")
    if kind == "scene" and (model.spec.context > 1 or trained == "volume"):
        why = f"2.5D context {model.spec.context}" if model.spec.context > 1 else "trained on volumes"
        raise CheckpointError(f"{model.path}: a volume checkpoint ({why}) given the raster scene {input_path}; "
                              "expected a scene checkpoint (2D, trained on scenes)")
    if kind == "volume" and trained == "scene":
        raise CheckpointError(f"{model.path}: a scene checkpoint (trained on scenes) given the volume {input_path}; "
                              "expected a volume checkpoint (trained on NIfTI volumes)")


def device_facts(predictor: Predictor) -> dict[str, Any]:
    """Where and how the model ran, and the memory this input took (``peakmem``: not the process's)."""
    return dict(oom_splits=predictor.oom_splits, device=str(predictor.device), precision=predictor.precision,
                precision_reason=predictor.precision_reason, **scene_facts())


def conclude(result: SceneResult, attach: Callable[[dict[str, Any]], None] | None) -> SceneResult:
    """Attach the QA report(s) to the record (``attach``), then write the record: the run is complete."""
    if attach is not None:
        attach(result.record)
    write_json_atomic(result.scene_dir / RECORD_NAME, result.record)
    return result
