"""Segment one raster scene into ``OUT/<name>/``: its COGs, QA report and ``record.json``.

The GeoTIFF specifics of a run: the scene is one plane of its bands (``readers.geotiff``),
per-scene statistics come from a sample of it, QA gathers its statistics from the streamed
bands and samples the input's thumbnail as the strips pass, and the outputs are COGs
(``sinks.geotiff``). Everything else is the run layer's (``run.layer``).
"""

from __future__ import annotations

import os
import time
import warnings
from collections.abc import Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from ..engine import Predictor, ProgressFn, resolve_device, stats_for
from ..errors import SegpipeWarning, collected_warnings
from ..options import RunOptions
from ..peakmem import start_watch
from ..qa import QAThresholds, SceneQA
from ..qa.checks import check_vectors
from ..qa.tally import BandTallier
from ..readers.geotiff import RasterInfo, RasterSource, StripReader, open_raster
from ..readers.identity import Identity, input_identity
from ..readers.vsi import InputPath, as_input, shown
from ..sinks import SinkSet, Watched
from ..sinks.geotiff import BLOCK, label_encoding, provenance, scene_sinks
from ..sinks.vectors import VectorSink
from ..sinks.writer import Observer
from ..spec import ModelSpec
from ..threads import Task
from ..tiling import TileGrid
from .folder import SceneFolder
from .layer import ModelHandle, SceneResult, check_model_kind, conclude, device_facts, finish_sinks, stream
from .qa import ImageQA, attach_qa
from .record import completion_record

# GDAL's block cache defaults to 5% of RAM and fills with every block read or written, so
# left alone it grows with the scene. GDAL reads the limit once, at its first raster I/O
# in the process; a user's own GDAL_CACHEMAX wins.
GDAL_CACHE_MB = 128


def bound_gdal_cache() -> None:
    """Cap GDAL's block cache (memory must not grow with the scene)."""
    os.environ.setdefault("GDAL_CACHEMAX", str(GDAL_CACHE_MB))


def segment_scene(input_path: str | Path, model: ModelHandle, out_root: str | Path,
                  options: RunOptions = RunOptions(), *, progress: ProgressFn | None = None,
                  observers: Sequence[Observer] = (), qa: bool = True,
                  qa_thresholds: QAThresholds | None = None, expect_record: str | None = None) -> SceneResult:
    """Segment one raster; write its outputs, QA report and (last) ``record.json`` under ``out_root/<name>/``.

    ``observers`` see every finished band after the outputs got it (best effort, like QA);
    ``expect_record``: as for :func:`pipeline.run.segment_file`.
    """
    input_path, out_root = as_input(input_path), Path(out_root)
    bound_gdal_cache()
    start_watch(options.device)  # this scene's peak memory, not the process's (record facts)
    t0, started = time.perf_counter(), datetime.now(timezone.utc).isoformat()
    with collected_warnings() as msgs:
        check_model_kind(model, input_path, "scene")
        info = open_raster(input_path, model.spec.bands)
        _check_bands(info, model.spec)
        s = options.resolved(model.spec)
        folder = SceneFolder.for_input(input_path, out_root)
        scene_dir = folder.begin(expect=expect_record)
        try:
            hasher = Task(input_identity, input_path, role="hash")
            outputs, timings, facts, image_qa = _run(info, model, s, scene_dir, progress, observers, qa)
            identity = hasher.result()
            timings["total_s"] = time.perf_counter() - t0
            record = _record(input_path, identity, info, model, s, outputs, timings, facts, msgs, started)
            attach = None if image_qa is None else (lambda rec: attach_qa(rec, [image_qa], scene_dir, qa_thresholds))
            result = conclude(SceneResult(input_path, scene_dir, outputs, record, msgs), attach)
        except BaseException:
            folder.abort()
            raise
    return result.moved(folder.commit())


def _run(info: RasterInfo, model: ModelHandle, s: RunOptions, scene_dir: Path, progress: ProgressFn | None,
         observers: Sequence[Observer], qa: bool) -> tuple[dict[str, Path], dict[str, float], dict[str, Any],
                                                           ImageQA | None]:
    """The scene through the engine into its sinks; its outputs, timings, facts and QA."""
    grid = TileGrid.build(info.height, info.width, s.tile, s.overlap)
    predictor = Predictor(model.module, model.spec, resolve_device(s.device), s.precision, s.tta)
    _, nodata, label_dtype = label_encoding(model.spec.num_classes)
    scene_qa = SceneQA.for_scene(info, grid, model.spec.class_names, model.spec.colors(), threaded=True) if qa \
        else None
    watched = [Watched(f"observer {i}", obs) for i, obs in enumerate(observers)]
    if scene_qa is not None:
        watched.append(Watched("QA", scene_qa))
    reader = StripReader(info, s.workers, any_band=s.nodata_rule == "any-band")
    try:
        norm = _norm_stats(reader, model.spec)
        sinks = SinkSet(scene_sinks(info, model.spec, s, scene_dir, provenance(info, model, s)))
        streamed = stream(predictor, RasterSource(info, reader), grid, norm, s, sinks, watched, nodata=nodata,
                          label_dtype=label_dtype, confidence=True,  # confidence feeds QA too
                          reducers=[BandTallier(model.spec.num_classes)] if scene_qa is not None else (),
                          progress=progress, input_observer=_thumbnail(scene_qa, watched[-1]) if scene_qa else None)
        outputs, finalise_s = finish_sinks(sinks)
    finally:
        reader.close()
    if reader.nonfinite:
        warnings.warn(f"{shown(info.path)}: {reader.nonfinite} pixel(s) with NaN/Inf values treated as nodata",
                      SegpipeWarning, stacklevel=3)
    if streamed.writer.valid_pixels == 0:
        warnings.warn(f"{shown(info.path)}: no valid pixel; the mask is all nodata", SegpipeWarning, stacklevel=3)
    facts = dict(tiles_total=streamed.stats.tiles_total, tiles_skipped=streamed.stats.tiles_skipped,
                 valid_pixels=streamed.writer.valid_pixels, entropy_sum=streamed.writer.entropy_sum,
                 **device_facts(predictor))
    facts.update({"vectors": s.facts() for s in sinks.sinks if isinstance(s, VectorSink)})
    timings = {**streamed.timings(), "finalise_s": finalise_s}
    extra = {"vectors": lambda: check_vectors(outputs["vectors"])} if "vectors" in outputs else None
    image_qa = None if scene_qa is None else ImageQA(scene_qa, watched[-1], outputs, input=info.path,
                                                     extra_checks=extra)
    return outputs, timings, facts, image_qa


def _norm_stats(reader: StripReader, spec: ModelSpec):
    norm = spec.normalization
    if not norm.per_image:
        return stats_for(norm, len(spec.bands))
    sample, valid = reader.sample()
    return stats_for(norm, len(spec.bands), sample.astype(np.float32), valid)


def _thumbnail(scene_qa: SceneQA, watched: Watched):
    """QA's input thumbnail, sampled from the strips as they pass (best effort, as QA is)."""

    def observe(block: Any, data: np.ndarray, valid: np.ndarray) -> None:
        if watched.error is None:
            try:
                v = np.ones(data.shape[2:], bool) if block.all_valid else valid[0]
                scene_qa.observe_input(block.strips[0].y, data[0], v)
            except Exception as exc:  # noqa: BLE001 - switched off like the observer
                watched.error = exc

    return observe


def _check_bands(info: RasterInfo, spec: ModelSpec) -> None:
    if info.count != len(spec.bands) and spec.bands == tuple(range(1, len(spec.bands) + 1)):
        warnings.warn(
            f"{shown(info.path)}: has {info.count} bands; the model uses bands {list(spec.bands)} only",
            SegpipeWarning, stacklevel=3,
        )


def _record(input_path: InputPath, identity: Identity, info: RasterInfo, model: ModelHandle, s: RunOptions,
            outputs: dict[str, Path], timings: dict[str, float], facts: dict[str, Any],
            msgs: list[str], started: str) -> dict[str, Any]:
    mpix = info.width * info.height / 1e6
    input_facts = {
        "width": info.width, "height": info.height, "bands": list(info.bands), "band_count": info.count,
        "dtype": info.dtype, "crs_wkt": info.crs_wkt, "transform": list(info.transform)[:6],
        "nodata": info.nodata, "mask_kind": info.mask_kind, "driver": info.driver,
    }
    timings = {**timings, "mpix_per_s": mpix / max(timings["total_s"], 1e-9)}
    return completion_record("scene", input_path, identity, input_facts, model, s, outputs, facts, timings, msgs,
                             started, block_size=BLOCK)
