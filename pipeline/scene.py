"""Segment one raster scene: read -> tile -> infer -> stitch -> write, streaming.

Three threads share the work so the model never waits on disk:

    reader thread   strips of rows, read in parallel (StripReader), queued ahead
    main thread     tiles -> device -> normalise -> model -> streaming stitcher
    writer thread   finished row bands -> GeoTIFF sinks (+ QA observers)

Queues are bounded, so memory stays ``O(tile x width)`` whatever the scene height.
"""

from __future__ import annotations

import logging
import os
import time
import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch

from .errors import InputError, OutputError, SegpipeWarning, collected_warnings
from .infer import Predictor, resolve_device
from .normalize import NormStats, apply_torch, stats_for
from .prefetch import prefetch
from .qa import QAThresholds, SceneQA, finalize_scene_qa
from .raster.read import RasterInfo, StripReader, open_raster
from .raster.write import BLOCK, GeoTiffSink, Grid, OutputSpec
from .record import (RECORD_NAME, completion_record, file_sha256, peak_rss_mb, remove_partials,
                     write_json_atomic)
from .settings import RunSettings
from .spec import ModelSpec
from .stitch import PROB_NODATA, PROB_SCALE, StreamingStitcher
from .strips import StripPool, unsigned_bits, widen
from .tiling import Tile, TileGrid, pad_mode
from .workers import Background, RowObserver, RowWriter

log = logging.getLogger(__name__)



class ModelHandle(Protocol):
    """What the engine needs of a loaded checkpoint (``models.checkpoint.LoadedModel`` is one)."""

    module: torch.nn.Module
    spec: ModelSpec
    sha256: str
    path: Path


@dataclass(frozen=True)
class Progress:
    """Reported after every batch: the CLI draws a bar, a flow logs it."""

    tiles_done: int
    tiles_total: int
    rows_done: int
    rows_total: int
    width: int
    elapsed_s: float

    @property
    def mpix_per_s(self) -> float:
        return self.rows_done * self.width / max(self.elapsed_s, 1e-9) / 1e6


ProgressFn = Callable[[Progress], None]


@dataclass
class SceneResult:
    """What a finished scene produced."""

    input: Path
    scene_dir: Path
    outputs: dict[str, Path]
    record: dict[str, Any]
    warnings: list[str] = field(default_factory=list)

    @property
    def record_path(self) -> Path:
        return self.scene_dir / RECORD_NAME


def scene_dir_for(input_path: Path, out_root: Path) -> Path:
    """Each input gets its own folder under the output root, named after the file."""
    name = input_path.name
    for ext in (".nii.gz", ".tif", ".tiff", ".nii", ".vrt", ".img", ".jp2"):
        if name.lower().endswith(ext):
            name = name[: -len(ext)]
            break
    return out_root / name


def prepare_scene_dir(scene_dir: Path) -> None:
    """Create the folder, check it is writable, drop any old record (the scene is now unfinished)
    and the temporary files of an interrupted run."""
    try:
        scene_dir.mkdir(parents=True, exist_ok=True)
        probe = scene_dir / ".segpipe-write-test"
        probe.write_bytes(b"")
        probe.unlink()
        stale = [scene_dir / n for n in (RECORD_NAME, "qa.json", "qa.html")]  # describe outputs about to be replaced
        stale += [*scene_dir.glob("qa_t*.json"), *scene_dir.glob("qa_t*.html")]  # a series' per-volume reports
        for path in stale:
            path.unlink(missing_ok=True)
        remove_partials(scene_dir)
    except OSError as exc:
        raise OutputError(f"{scene_dir}: output folder is not writable ({exc.strerror or exc})") from exc


def segment_scene(
    input_path: str | Path,
    model: ModelHandle,
    out_root: str | Path,
    settings: RunSettings = RunSettings(),
    *,
    progress: ProgressFn | None = None,
    observers: Sequence[RowObserver] = (),
    qa: bool = True,
    qa_thresholds: QAThresholds | None = None,
) -> SceneResult:
    """Segment one raster and write its outputs, QA report and ``record.json`` under ``out_root/<name>/``.

    QA statistics are gathered from the streamed rows (a :class:`~pipeline.qa.SceneQA`
    observer); ``qa.json`` and ``qa.html`` are written after the outputs, before the record.
    """
    input_path, out_root = Path(input_path), Path(out_root)
    bound_gdal_cache()
    t0 = time.perf_counter()
    started = datetime.now(timezone.utc).isoformat()
    with collected_warnings() as msgs:
        info = open_raster(input_path, model.spec.bands)
        _check_bands(info, model.spec)
        scene_dir = scene_dir_for(input_path, out_root)
        prepare_scene_dir(scene_dir)
        s = settings.resolved(model.spec)
        hasher = Background(file_sha256, input_path)
        run = _SceneRun(info, model, s, scene_dir, progress, observers)
        scene_qa = None
        if qa:
            scene_qa = SceneQA.for_scene(info, run.grid, model.spec.class_names, model.spec.colors(), threaded=True)
            run.observers = [*observers, scene_qa]
            run.input_observer = scene_qa.observe_input
        outputs, timings, facts = run.execute()
        input_sha = hasher.result()
    timings["total_s"] = time.perf_counter() - t0
    record = _record(input_path, input_sha, info, model, s, outputs, timings, facts, msgs, started)
    if scene_qa is not None:
        attach_qa(record, scene_qa, scene_dir, outputs, qa_thresholds)
    write_json_atomic(scene_dir / RECORD_NAME, record)
    return SceneResult(input_path, scene_dir, outputs, record, msgs)


def band_reducers(observers: Sequence[Any]) -> list[Any]:
    """The observers' per-band reducers (``SceneQA.band_reducer``) for the stitcher to run on its device."""
    return [obs.band_reducer() for obs in observers if callable(getattr(obs, "band_reducer", None))]


# GDAL's block cache defaults to 5% of RAM and fills with every block read or written, so
# left alone it grows with the scene. GDAL reads the limit once, at its first raster I/O
# in the process; a user's own GDAL_CACHEMAX wins.
GDAL_CACHE_MB = 128


def bound_gdal_cache() -> None:
    """Cap GDAL's block cache (memory must not grow with the scene)."""
    os.environ.setdefault("GDAL_CACHEMAX", str(GDAL_CACHE_MB))


def attach_qa(record: dict[str, Any], scene_qa: SceneQA, scene_dir: Path, outputs: dict[str, Path],
              thresholds: QAThresholds | None, **finalize_kw: Any) -> None:
    """Write qa.json + qa.html and note the verdict in the record.

    A bug in QA must never lose a night's segmentation: its failure is recorded, not raised.
    """
    t = time.perf_counter()
    record["qa"] = qa_entry(record, scene_qa, scene_dir, outputs, thresholds, **finalize_kw)
    record["timings"]["qa_s"] = time.perf_counter() - t


def qa_entry(record: dict[str, Any], scene_qa: SceneQA, scene_dir: Path, outputs: dict[str, Path],
             thresholds: QAThresholds | None, **finalize_kw: Any) -> dict[str, Any]:
    """Write one QA report; what the record keeps of it: the verdict, or the error if QA failed."""
    try:
        return finalize_scene_qa(scene_qa, scene_dir=scene_dir, record=record, outputs=outputs,
                                 thresholds=thresholds, **finalize_kw).record_entry()
    except Exception as exc:  # noqa: BLE001 - a bug in QA never loses the segmentation
        log.exception("QA of %s failed", scene_dir)
        return {"verdict": None, "error": f"{type(exc).__name__}: {exc}"}


def _check_bands(info: RasterInfo, spec: ModelSpec) -> None:
    if info.count != len(spec.bands) and spec.bands == tuple(range(1, len(spec.bands) + 1)):
        warnings.warn(
            f"{info.path}: has {info.count} bands; the model uses bands {list(spec.bands)} only",
            SegpipeWarning, stacklevel=3,
        )


class _SceneRun:
    """State of one scene run; :meth:`execute` is the whole streaming loop."""

    def __init__(self, info: RasterInfo, model: ModelHandle, s: RunSettings, scene_dir: Path,
                 progress: ProgressFn | None, observers: Sequence[RowObserver]) -> None:
        self.info, self.model, self.s, self.scene_dir = info, model, s, scene_dir
        self.spec = model.spec
        self.progress = progress
        self.observers = observers
        self.grid = TileGrid.build(info.height, info.width, s.tile, s.overlap)
        self.device = resolve_device(s.device)
        self.predictor = Predictor(model.module, self.spec, self.device, s.precision, s.tta)
        self.timings = dict(read_wait_s=0.0, infer_s=0.0, stitch_s=0.0, write_s=0.0, finalise_s=0.0)
        self.tiles_skipped = 0
        self.unsigned_bits = unsigned_bits(np.dtype(info.dtype))
        self.batch_size = s.batch_for(self.device.type)
        self.input_observer: Callable[[int, np.ndarray, np.ndarray], None] | None = None

    # -- outputs -------------------------------------------------------------------------
    def _sinks(self) -> dict[str, GeoTiffSink]:
        spec, s, info = self.spec, self.s, self.info
        grid = Grid(info.width, info.height, info.crs, info.transform)
        k = spec.num_classes
        dtype, nodata = ("uint8", 255) if k <= 255 else ("uint16", 65535)
        stem = self.scene_dir.name
        tags = self._tags()
        colormap = {i: (*c, 255) for i, c in enumerate(spec.colors())} if dtype == "uint8" else None
        outs = {"mask": OutputSpec(
            self.scene_dir / f"{stem}_mask.tif", 1, dtype, nodata, "mode", colormap, ("class",),
            {**tags, "CLASS_NAMES": ",".join(spec.class_names)}, classes=k)}
        if s.confidence:
            outs["confidence"] = OutputSpec(
                self.scene_dir / f"{stem}_confidence.tif", 1, "uint8", PROB_NODATA, "average", None,
                ("max class probability x 254",), tags, 1.0 / PROB_SCALE)
        if s.probabilities:
            outs["probabilities"] = OutputSpec(
                self.scene_dir / f"{stem}_probabilities.tif", k, "uint8", PROB_NODATA, "average", None,
                tuple(f"p({n}) x 254" for n in spec.class_names), tags, 1.0 / PROB_SCALE)
        self.label_dtype = torch.uint8 if dtype == "uint8" else torch.int32
        self.nodata = nodata
        sinks: dict[str, GeoTiffSink] = {}
        try:
            for name, o in outs.items():
                sinks[name] = GeoTiffSink(o, grid, s.compress)
        except BaseException:
            for sink in sinks.values():  # the ones already made: their temporary files and threads
                sink.abort()
            raise
        return sinks

    def _tags(self) -> dict[str, str]:
        from . import __version__

        return {
            "SEGPIPE_VERSION": __version__, "SEGPIPE_INPUT": str(self.info.path.resolve()),
            "SEGPIPE_MODEL": str(self.model.path), "SEGPIPE_MODEL_SHA256": self.model.sha256,
            "SEGPIPE_TILE": str(self.s.tile), "SEGPIPE_OVERLAP": str(self.s.overlap),
            "SEGPIPE_BLEND": self.s.blend, "SEGPIPE_TTA": str(self.s.tta),
        }

    # -- the loop --------------------------------------------------------------------------
    def execute(self) -> tuple[dict[str, Path], dict[str, float], dict[str, Any]]:
        sinks = self._sinks()
        stitcher = StreamingStitcher(
            self.grid, self.spec.num_classes, self.s.blend,
            self.device, nodata=self.nodata, label_dtype=self.label_dtype,
            confidence=True, probabilities="probabilities" in sinks,  # confidence feeds QA too
            reducers=band_reducers(self.observers),
        )
        reader = StripReader(self.info, self.s.workers)
        writer = RowWriter(sinks, self.observers)
        try:
            norm = self._norm_stats(reader)
            self._loop(reader, stitcher, writer, norm)
            writer.close()
            self.timings["write_s"] = writer.busy_s
            self.timings["copy_wait_s"] = writer.copy_wait_s
            t = time.perf_counter()
            outputs = {name: sink.finish() for name, sink in sinks.items()}
            self.timings["finalise_s"] = time.perf_counter() - t
        except BaseException:
            writer.close(abort=True)
            for sink in sinks.values():
                sink.abort()
            raise
        finally:
            reader.close()
        if reader.nonfinite:
            warnings.warn(f"{self.info.path}: {reader.nonfinite} pixel(s) with NaN/Inf values treated as nodata",
                          SegpipeWarning, stacklevel=2)
        if writer.valid_pixels == 0:
            warnings.warn(f"{self.info.path}: no valid pixel; the mask is all nodata", SegpipeWarning, stacklevel=2)
        facts = dict(tiles_total=self.grid.n_tiles, tiles_skipped=self.tiles_skipped,
                     valid_pixels=writer.valid_pixels, entropy_sum=writer.entropy_sum,
                     oom_splits=self.predictor.oom_splits, device=str(self.device),
                     precision=self.predictor.precision, precision_reason=self.predictor.precision_reason,
                     peak_rss_mb=peak_rss_mb())
        if self.device.type == "cuda":
            facts["peak_gpu_mb"] = torch.cuda.max_memory_allocated(self.device) / 2**20
        return outputs, self.timings, facts

    def _norm_stats(self, reader: StripReader) -> NormStats:
        norm = self.spec.normalization
        if not norm.per_image:
            return stats_for(norm, len(self.spec.bands))
        sample, valid = reader.sample()
        return stats_for(norm, len(self.spec.bands), sample.astype(np.float32), valid)

    def _loop(self, reader: StripReader, stitcher: StreamingStitcher, writer: RowWriter, norm: NormStats) -> None:
        t0 = time.perf_counter()
        done = 0
        pool = StripPool(self.info, self.grid, self.device)
        for row, idx in enumerate(self._strips(reader, pool)):
            data, valid = pool.data[idx], pool.valid[idx]
            batches = list(self._batches(row, valid))  # decided on the host before the buffer is reused
            if self.input_observer is not None:
                self.input_observer(self.grid.row_offsets[row], data, valid)
            strip, strip_valid = pool.upload(idx)  # on a GPU: a side stream; the buffer is refilled after the copy
            for tiles in batches:
                t = time.perf_counter()
                x, vmask = self._to_model_input(strip, strip_valid, tiles, norm)
                probs = self.predictor(x)
                t2 = time.perf_counter()
                for i, tile in enumerate(tiles):
                    stitcher.add(tile, probs[i], vmask[i])
                self.timings["infer_s"] += t2 - t
                self.timings["stitch_s"] += time.perf_counter() - t2
                done += len(tiles)
                self._report(done, row, t0)
            pool.release(idx)
            t = time.perf_counter()
            band = stitcher.finish_row_deferred()  # the writer thread waits for its copy, not this one
            self.timings["stitch_s"] += time.perf_counter() - t
            writer.put(band)
            self._report(done, row + 1, t0)

    def _report(self, done: int, rows_done_grid: int, t0: float) -> None:
        if self.progress is None:
            return
        rows = self.grid.rows_finished_after(rows_done_grid - 1)[1] if rows_done_grid else 0
        self.progress(Progress(done, self.grid.n_tiles - self.tiles_skipped, rows, self.grid.height,
                               self.info.width, time.perf_counter() - t0))

    def _strips(self, reader: StripReader, pool: StripPool) -> Iterator[int]:
        """Indices of filled strip buffers, one per grid row, read ahead in a background thread."""

        def fill() -> Iterator[int]:
            for y in self.grid.row_offsets:
                idx = pool.acquire()
                if idx is None:  # closed early
                    return
                reader.read_into(y, pool.data[idx], pool.valid[idx])
                yield idx

        yield from prefetch(fill(), maxsize=2, name="segpipe-strips", on_wait=self._waited, wake=pool.wake)

    def _waited(self, seconds: float) -> None:
        self.timings["read_wait_s"] += seconds

    def _batches(self, row: int, valid: np.ndarray) -> Iterator[list[Tile]]:
        """Tiles of grid row ``row`` that hold at least one valid pixel, in batches."""
        tiles: list[Tile] = []
        for tile in self.grid.row_tiles(row):
            x, w = tile.window.col_off, tile.window.width
            if not valid[:, x : x + w].any():
                self.tiles_skipped += 1
                continue
            tiles.append(tile)
            if len(tiles) == self.batch_size:
                yield tiles
                tiles = []
        if tiles:
            yield tiles

    def _to_model_input(self, strip: torch.Tensor, strip_valid: torch.Tensor, tiles: list[Tile],
                        norm: NormStats) -> tuple[torch.Tensor, torch.Tensor]:
        """Cut tiles from the strip on the device, widen, pad, normalise; invalid pixels become 0."""
        cols = [(t.window.col_off, t.window.width) for t in tiles]
        x = widen(torch.stack([strip[:, :, c : c + w] for c, w in cols]), self.unsigned_bits)
        v = torch.stack([strip_valid[:, c : c + w] for c, w in cols])[:, None].float()
        ph, pw = self.grid.tile_h - x.shape[2], self.grid.tile_w - x.shape[3]
        if ph or pw:  # an image smaller than a tile: reflect-pad up to the network's shape
            mode = pad_mode(x.shape[2], x.shape[3], ph, pw)
            x = torch.nn.functional.pad(x, (0, pw, 0, ph), mode=mode)
            v = torch.nn.functional.pad(v, (0, pw, 0, ph), mode=mode)
        x = apply_torch(x, norm)
        # Invalid pixels become 0 after normalisation (the mean for meanstd): never raw nodata.
        return x.mul_(v), v[:, 0] > 0.5


def _record(input_path: Path, input_sha: str, info: RasterInfo, model: ModelHandle, s: RunSettings,
            outputs: dict[str, Path], timings: dict[str, float], facts: dict[str, Any],
            msgs: list[str], started: str) -> dict[str, Any]:
    mpix = info.width * info.height / 1e6
    input_facts = {
        "width": info.width, "height": info.height, "bands": list(info.bands), "band_count": info.count,
        "dtype": info.dtype, "crs_wkt": info.crs_wkt, "transform": list(info.transform)[:6],
        "nodata": info.nodata, "mask_kind": info.mask_kind, "driver": info.driver,
    }
    timings = {**timings, "mpix_per_s": mpix / max(timings["total_s"], 1e-9)}
    return completion_record("scene", input_path, input_sha, input_facts, model, s, outputs, facts, timings, msgs,
                             started, block_size=BLOCK)


__all__ = ["ModelHandle", "Progress", "RunSettings", "SceneResult", "segment_scene", "scene_dir_for", "InputError"]
