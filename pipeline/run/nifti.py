"""Segment one NIfTI file into ``OUT/<name>/``: its label volume(s), QA report(s) and ``record.json``.

The NIfTI specifics of a run: the file is read into canonical RAS+ order (whole, or, stored
slice by slice, decoded while its first slices run: ``readers.nifti``), each volume is a
stack of planes with 2.5D context (``VolumeSource``), the finished bands are assembled into
uint8 volumes that ``sinks.nifti`` writes back in the input's own geometry once the file is
known to be whole (its gzip trailer checked), and the record adds per-label mL. A 4D series
run with ``series="each"`` segments every volume in turn (outputs tagged ``_t<i>``, one QA
report each) into one record. Everything else is the run layer's (``run.layer``).
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np

from ..engine import PROB_NODATA, Predictor, ProgressFn, resolve_device, volume_stats
from ..errors import CheckpointError, ConfigError, SegpipeWarning, collected_warnings
from ..options import RunOptions
from ..peakmem import start_watch
from ..qa import QAThresholds, SceneQA
from ..qa.planes import centre_planes
from ..qa.tally import BandTallier
from ..readers.identity import Identity, input_identity
from ..readers.nifti import ReadAhead, Volume, VolumeSource, iter_volumes, open_streamed, plane_shape
from ..sinks import SinkSet, Watched
from ..sinks.nifti import compare_geometry, volume_sinks
from ..sinks.nifti.labelvolumes import LabelCounts
from ..sinks.writer import Observer
from ..threads import Task
from ..tiling import TileGrid
from .folder import SceneFolder
from .layer import ModelHandle, SceneResult, check_model_kind, conclude, device_facts, finish_sinks, stream
from .planes import PlaneJoiner
from .qa import ImageQA, attach_qa
from .record import completion_record


def segment_volume(input_path: str | Path, model: ModelHandle, out_root: str | Path,
                   options: RunOptions = RunOptions(), *, progress: ProgressFn | None = None,
                   observers: Sequence[Observer] = (), qa: bool = True, qa_thresholds: QAThresholds | None = None,
                   read_ahead: ReadAhead | None = None, expect_record: str | None = None) -> SceneResult:
    """Segment a ``.nii``/``.nii.gz`` volume (or series); write its outputs, QA report(s) and ``record.json``.

    Args:
        options: as for scenes, plus ``slice_axis`` (default: the coarsest spacing), ``context``
            (must equal the checkpoint's) and ``series``/``volume`` for 4D files.
        progress: called after every batch; a volume's "rows" are its slices (see ``engine.Progress``).
        observers: see each finished slice plane as a ``Band`` (``plane`` = slice index), in order,
            after the outputs got it (best effort, like QA); with ``series="each"`` every volume's.
        read_ahead: the batch's read-ahead slot, which may hold this volume already decoding.
        expect_record: as for :func:`pipeline.run.segment_file`.

    Raises:
        InputError: unusable file (corrupt, not NIfTI, 2D, a 4D series without a policy),
            raised before anything is written.
        CheckpointError / ConfigError: the model does not take single-channel slices, or
            ``context`` disagrees with the checkpoint.
    """
    input_path, out_root = Path(input_path), Path(out_root)
    start_watch(options.device)  # this volume's peak memory, not the process's (record facts)
    t0, started = time.perf_counter(), datetime.now(timezone.utc).isoformat()
    with collected_warnings() as msgs:
        s = _resolve(options, model, input_path)
        volumes = _open_volumes(input_path, s, read_ahead)
        t = time.perf_counter()
        first = next(volumes)  # header errors are raised here; data errors here or, streamed, before any write
        run = _VolumeRun(model, s, progress, qa, tuple(observers))
        run.timings["read_s"] = time.perf_counter() - t
        folder = SceneFolder.for_input(input_path, out_root)
        try:
            run.scene_dir = folder.begin(expect=expect_record)
            hasher = Task(input_identity, input_path, role="hash")
            run.execute(first, volumes)
            identity = hasher.result()
            run.timings["total_s"] = time.perf_counter() - t0
            record = _record(input_path, identity, run, model, s, msgs, started)
            attach = (lambda rec: attach_qa(rec, run.qa, run.scene_dir, qa_thresholds)) if run.qa else None
            result = conclude(SceneResult(input_path, run.scene_dir, run.outputs, record, msgs), attach)
        except BaseException:
            if first.arrival is not None:
                first.arrival.cancel()  # a streamed volume's decoder need not read on
            folder.abort()
            raise
    return result.moved(folder.commit())


def _resolve(options: RunOptions, model: ModelHandle, input_path: Path) -> RunOptions:
    """The checkpoint's tile/overlap/context filled in; a volume model must take 1 band x context."""
    spec = model.spec
    check_model_kind(model, input_path, "volume")
    if tuple(spec.bands) != (1,):
        raise CheckpointError(
            f"{model.path}: takes bands {list(spec.bands)} ({spec.in_channels} channels = {len(spec.bands)} "
            f"band(s) x context {spec.context}), but {input_path} is a single-channel volume; expected a "
            "checkpoint with bands [1] (in_channels = context) for NIfTI input")
    if options.context is not None and options.context != spec.context:
        raise ConfigError(
            f"--context {options.context} does not match {model.path}, trained with 2.5D context "
            f"{spec.context} ({spec.in_channels} input channels); drop --context or pass --context {spec.context}")
    return options.resolved(spec)


def _open_volumes(path: Path, s: RunOptions, read_ahead: ReadAhead | None) -> Iterator[Volume]:
    """The volumes to segment: decoded while they are segmented where the file allows it
    (``decode.open_streamed``: one 3D integer volume stored slice by slice), else read whole."""
    policy = s.series_policy
    if policy != "each":
        vol = read_ahead.take(path, s.slice_axis) if read_ahead is not None and policy in ("error", 0) else None
        vol = vol or open_streamed(path, slice_axis=s.slice_axis, volume=s.volume)
        if vol is not None:
            return iter([vol])
    kw = dict(volume=policy, series_policy="select") if isinstance(policy, int) else dict(series_policy=policy)
    return iter_volumes(path, slice_axis=s.slice_axis, **kw)


@dataclass
class _VolumeRun:
    """State of one file's run: one predictor, each volume in turn, outputs and facts."""

    model: ModelHandle
    s: RunOptions
    progress: ProgressFn | None
    qa_enabled: bool
    observers: tuple[Observer, ...] = ()
    scene_dir: Path = Path()
    outputs: dict[str, Path] = field(default_factory=dict)
    volumes: list[dict[str, Any]] = field(default_factory=list)
    qa: list[ImageQA] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=lambda: dict(
        read_s=0.0, decode_s=0.0, stats_s=0.0, read_wait_s=0.0, decode_wait_s=0.0, prepare_s=0.0, infer_s=0.0,
        stitch_s=0.0, write_s=0.0, copy_wait_s=0.0, finalise_s=0.0))
    first: Volume | None = None
    grid: TileGrid | None = None

    def __post_init__(self) -> None:
        self.spec = self.model.spec
        self.predictor = Predictor(self.model.module, self.spec, resolve_device(self.s.device), self.s.precision,
                                   self.s.tta)
        self.tiles_skipped = 0
        self.slices = 0

    def execute(self, first: Volume, rest: Iterator[Volume]) -> None:
        """Segment ``first`` and then each further volume of ``rest``; on failure remove what was written."""
        self.first = first
        sinks: list[SinkSet] = []
        try:
            vol: Volume | None = first
            while vol is not None:
                sinks.append(self._segment(vol))
                vol = None  # drop it before the next one is converted: one float32 volume at a time
                t = time.perf_counter()
                vol = next(rest, None)
                self.timings["read_s"] += time.perf_counter() - t
        except BaseException:
            for done in sinks:
                done.abort()
            raise

    def _segment(self, vol: Volume) -> SinkSet:
        """One volume through the engine into its sinks; its outputs written once the file is whole."""
        tag = f"t{vol.volume_index}" if self.s.series_policy == "each" and vol.volume_index is not None else ""
        h, w = plane_shape(vol.shape, vol.slice_axis)
        self.grid = grid = TileGrid.build(h, w, self.s.tile, self.s.overlap)
        t = time.perf_counter()
        if vol.arrival is not None and self.spec.normalization.per_image:
            vol.arrival.finish()  # statistics of the whole volume: no slice can start before
        norm = volume_stats(vol.data, self.spec.normalization, vol.valid)
        self.timings["stats_s"] += time.perf_counter() - t
        counts = LabelCounts(vol.zooms, self.spec.class_names)
        sinks = SinkSet([*volume_sinks(vol, self.spec, self.s, self.scene_dir, tag), lambda: counts])
        qa, watched = self._qa(vol, grid)
        watched += [Watched(f"observer {i}", PlaneJoiner(grid.height, obs)) for i, obs in enumerate(self.observers)]
        source = VolumeSource(vol, self.s.context)
        streamed = stream(self.predictor, source, grid, norm, self.s, sinks, watched, nodata=0,
                          label_dtype=_label_dtype(self.spec.num_classes), confidence=qa is not None,
                          reducers=[BandTallier(self.spec.num_classes)],  # label counts and QA, on the device
                          progress=self.progress)
        planes = centre_planes(vol.data, sinks.sinks[0].assemblers[0].result(), vol.zooms) if qa is not None else None
        outputs, finalise_s = finish_sinks(sinks, before=None if vol.arrival is None else vol.arrival.finish)
        self._account(streamed, source, vol, finalise_s)
        self.outputs.update(outputs)
        if qa is not None:
            self.qa.append(_volume_qa(qa, watched[0], dict(outputs), tag, vol, planes))
        self._warn(vol, streamed.writer.valid_pixels)
        self.volumes.append(dict(
            index=vol.volume_index, tag=tag, series_note=vol.series_note, n_invalid=vol.n_invalid,
            valid_voxels=streamed.writer.valid_pixels, entropy_sum=streamed.writer.entropy_sum,
            normalization=norm.to_record(), label_volumes=counts.volumes.result(),
            outputs={k: p.name for k, p in outputs.items()}))
        return sinks

    def _qa(self, vol: Volume, grid: TileGrid) -> tuple[SceneQA | None, list[Watched]]:
        if not self.qa_enabled:
            return None, []
        axis = vol.slice_axis
        qa = SceneQA.for_volume((vol.shape[axis], grid.height, grid.width), float(np.prod(vol.zooms)) / 1000.0,
                                self.spec.class_names, grid, colors=self.spec.colors(), threaded=True,
                                slice_axis=axis)
        feed = PlaneJoiner(grid.height, lambda b: qa.observe_slice(b.plane, b.labels, b.valid, b.confidence,
                                                                   b.entropy_sum, b.tallies))
        return qa, [Watched("QA", feed)]

    def _account(self, streamed: Any, source: VolumeSource, vol: Volume, finalise_s: float) -> None:
        for k, v in streamed.timings().items():
            self.timings[k] += v
        self.timings["decode_wait_s"] += source.decode_wait_s
        self.timings["finalise_s"] += finalise_s
        if vol.arrival is not None:
            self.timings["decode_s"] += vol.arrival.seconds
        self.tiles_skipped += streamed.stats.tiles_skipped
        self.slices += source.planes

    def _warn(self, vol: Volume, valid_voxels: int) -> None:
        if vol.n_invalid:
            warnings.warn(f"{vol.path}: {vol.n_invalid} invalid (NaN/Inf) voxel(s) labelled 0 in the label volume "
                          f"and {PROB_NODATA} in confidence/probability volumes", SegpipeWarning, stacklevel=4)
        if valid_voxels == 0:
            warnings.warn(f"{vol.path}: no valid voxel; the label volume is all 0", SegpipeWarning, stacklevel=4)

    def facts(self) -> dict[str, Any]:
        grid, vol = self.grid, self.first
        assert grid is not None and vol is not None
        slices = self.slices
        valid = sum(v["valid_voxels"] for v in self.volumes)
        facts: dict[str, Any] = dict(
            slice_axis=vol.slice_axis, context=self.s.context, plane_shape=[grid.height, grid.width],
            slices_total=slices, tiles_per_slice=grid.n_tiles, tiles_total=grid.n_tiles * slices,
            tiles_skipped=self.tiles_skipped, valid_voxels=valid, valid_pixels=valid,
            entropy_sum=sum(v["entropy_sum"] for v in self.volumes), n_volumes=len(self.volumes),
            volumes=self.volumes, **device_facts(self.predictor))
        if len(self.volumes) == 1:
            facts["label_volumes"] = self.volumes[0]["label_volumes"]
            facts["normalization"] = self.volumes[0]["normalization"]
        return facts


def _volume_qa(qa: SceneQA, watched: Watched, outputs: dict[str, Path], tag: str, vol: Volume,
               planes: Any) -> ImageQA:
    """What the volume's QA report needs, taken now so that the volume itself is not kept for it.

    Best effort, as QA is: an error here is QA's (its report says so), not the run's.
    """
    try:
        qa.drain()
    except Exception as exc:  # noqa: BLE001 - the streaming step failed; watched has it (or gets it)
        watched.error = watched.error or exc
    try:
        problems = compare_geometry(nib.load(outputs[f"{tag}_labels" if tag else "labels"]).header, vol)
    except Exception as exc:  # noqa: BLE001 - reported as the check's finding
        problems = [f"the written label volume could not be reopened: {type(exc).__name__}: {exc}"]
    return ImageQA(qa, watched, outputs, tag, vol.volume_index, planes, {"nifti_header": lambda: problems})


def _label_dtype(num_classes: int) -> Any:
    import torch

    return torch.uint8 if num_classes <= 256 else torch.int32


def _record(input_path: Path, identity: Identity, run: _VolumeRun, model: ModelHandle, s: RunOptions,
            msgs: list[str], started: str) -> dict[str, Any]:
    vol, timings = run.first, run.timings
    assert vol is not None
    hdr = vol.header
    x, y, z = vol.orientation.source_shape
    total = max(timings["total_s"], 1e-9)
    facts = run.facts()
    input_facts = {
        "width": x, "height": y, "depth": z, "shape": list(vol.source_shape),
        "canonical_shape": list(vol.shape), "zooms": [float(v) for v in hdr.get_zooms()[:3]],
        "canonical_zooms": list(vol.zooms), "dtype": vol.source_dtype, "scaling": list(vol.scaling),
        "orientation": "".join(vol.orientation.source_codes), "qform_code": int(hdr["qform_code"]),
        "sform_code": int(hdr["sform_code"]), "nifti_version": 2 if isinstance(hdr, nib.Nifti2Header) else 1,
        "series_note": "; ".join(v["series_note"] for v in run.volumes if v["series_note"]),
        "volumes": [v["index"] for v in run.volumes], "n_invalid": sum(v["n_invalid"] for v in run.volumes),
    }
    voxels = facts["slices_total"] * facts["plane_shape"][0] * facts["plane_shape"][1]
    timings = {**timings, "slices_per_s": facts["slices_total"] / total, "mpix_per_s": voxels / total / 1e6}
    return completion_record("volume", input_path, identity, input_facts, model, s, run.outputs, facts,
                             timings, msgs, started)


__all__ = ["segment_volume"]
