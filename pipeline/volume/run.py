"""Segment one NIfTI file: read -> normalise -> slice engine -> label volume(s) -> record.json.

The volume twin of ``pipeline.scene.segment_scene`` and built from its parts: the same
predictor, tiling, streaming stitcher, writer thread, progress type and record. What
differs is the frame: the input is read into canonical RAS+ order (``io``; or, stored
slice by slice, decoded while the first slices run: ``stream``), cut
into 2D/2.5D slices along one axis (``engine``), and the finished slice planes are
assembled into one uint8 label volume (+ optional uint8 confidence / per-class
probability volumes; never K float32 volumes) that ``write.write_label_volume`` puts
back into the input's own geometry.

Outputs under ``OUT/<name>/`` (``<name>`` is the file name without ``.nii[.gz]``)::

    <name>_labels.nii.gz                 uint8 labels (uint16 past 256 classes); 0 at invalid voxels
    <name>_labels.labels.json/.ctbl/.itksnap.txt   label names and colours
    <name>_confidence.nii.gz             optional: max probability x 254, 255 = invalid
    <name>_probability_<class>.nii.gz    optional, one per class: probability x 254, 255 = invalid
    record.json                          written last: the run is complete

A 4D series run with ``series="each"`` writes one such set per volume with a ``_t<i>``
tag (``<name>_t0_labels.nii.gz`` ...), one QA report per volume (``qa_t<i>.json``/``.html``)
with the worst of them also as ``qa.json``/``qa.html``, and one record for the file.
"""

from __future__ import annotations

import logging
import re
import time
import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np

from ..errors import CheckpointError, ConfigError, SegpipeWarning, collected_warnings
from ..infer import Predictor, resolve_device
from ..qa import QAThresholds, SceneQA
from ..qa.tally import BandTallier
from ..qa.schema import QA_HTML, QA_JSON
from ..qa.verdict import VERDICT_RANK
from ..record import RECORD_NAME, completion_record, file_sha256, peak_rss_mb, write_json_atomic, write_text_atomic
from ..scene import (ModelHandle, Progress, ProgressFn, SceneResult, attach_qa, prepare_scene_dir, qa_entry,
                     scene_dir_for)
from ..workers import Background, RowWriter
from ..settings import RunSettings
from ..spec import ModelSpec
from ..tiling import TileGrid
from .engine import FinishedSlice, SliceEngine
from .io import Volume, iter_volumes
from .normalize import apply, needs_whole_volume, volume_stats
from .slicing import CONF_NODATA, SliceAssembler, plane_shape
from .stats import LabelVolumes
from .stream import open_streamed, take_read_ahead
from .write import compare_geometry, write_label_volume

log = logging.getLogger(__name__)

# Called after each finished slice, in slice order, from the writer thread:
# observer(slice_index, labels (H, W), valid (H, W) bool, confidence (H, W) uint8 or None).
# Planes follow the slicing convention (rows: lower remaining canonical axis); the arrays
# are fresh per slice and must not be modified. ``pipeline.qa.SceneQA.observe_slice`` fits.
# With series="each" an observer sees every volume's slices in turn (the index restarts at 0).
SliceObserver = Callable[[int, np.ndarray, np.ndarray, "np.ndarray | None"], None]


def segment_volume(
    input_path: str | Path,
    model: ModelHandle,
    out_root: str | Path,
    settings: RunSettings = RunSettings(),
    *,
    progress: ProgressFn | None = None,
    observers: Sequence[SliceObserver] = (),
    qa: bool = True,
    qa_thresholds: QAThresholds | None = None,
) -> SceneResult:
    """Segment a ``.nii``/``.nii.gz`` volume (or series) and write its outputs and ``record.json``.

    Args:
        settings: as for scenes, plus ``slice_axis`` (default: the coarsest spacing),
            ``context`` (must equal the checkpoint's) and ``series`` ("error" | "each" | a
            0-based volume index) for 4D files.
        progress: called with :class:`~pipeline.scene.Progress` after each slice; its
            tiles/rows count *slices* (of all volumes) and ``width`` is voxels per slice,
            so ``mpix_per_s`` is voxels per second / 1e6.
        observers: see :data:`SliceObserver`.
        qa, qa_thresholds: write ``qa.json``/``qa.html`` (per-label mL, components, confidence,
            three-plane overlays, NIfTI header check) before the record; a series run with
            ``each`` writes one per volume and copies the worst to ``qa.json``/``qa.html``.

    Raises:
        InputError: unusable file (corrupt, not NIfTI, 2D, NaN-only is *not* one), or a
            4D series without a policy; raised before anything is written.
        CheckpointError / ConfigError: the model does not take single-channel slices, or
            ``context`` disagrees with the checkpoint.
    """
    input_path, out_root = Path(input_path), Path(out_root)
    t0 = time.perf_counter()
    started = datetime.now(timezone.utc).isoformat()
    with collected_warnings() as msgs:
        s = _resolve_settings(settings, model, input_path)
        volumes = _open_volumes(input_path, s)
        t = time.perf_counter()
        first = next(volumes)  # header errors are raised here; data errors here or, streamed, before any write
        read_s = time.perf_counter() - t
        try:
            scene_dir = scene_dir_for(input_path, out_root)
            prepare_scene_dir(scene_dir)
            hasher = Background(file_sha256, input_path)
            run = _VolumeRun(model, s, scene_dir, progress, observers, _total_slices(first, s.series))
            run.qa_enabled = qa
            run.timings["read_s"] = read_s
            run.execute(first, volumes)
        except BaseException:
            if first.arrival is not None:
                first.arrival.cancel()  # a streamed volume's decoder need not read on
            raise
        input_sha = hasher.result()
    run.timings["total_s"] = time.perf_counter() - t0
    record = _record(input_path, input_sha, run, model, s, msgs, started)
    if len(run.qa) == 1 and not run.qa[0].tag:
        one = run.qa[0]
        attach_qa(record, one.qa, scene_dir, run.outputs, qa_thresholds,
                  extra_checks={"nifti_header": one.header_check}, planes=one.planes)
    elif run.qa:
        _attach_series_qa(record, run.qa, scene_dir, qa_thresholds)
    write_json_atomic(scene_dir / RECORD_NAME, record)
    return SceneResult(input_path, scene_dir, run.outputs, record, msgs)


def _resolve_settings(settings: RunSettings, model: ModelHandle, input_path: Path) -> RunSettings:
    """The checkpoint's tile/overlap/context filled in; a volume model must take 1 band x context."""
    spec = model.spec
    if tuple(spec.bands) != (1,):
        raise CheckpointError(
            f"{model.path}: takes bands {list(spec.bands)} ({spec.in_channels} channels = {len(spec.bands)} "
            f"band(s) x context {spec.context}), but {input_path} is a single-channel volume; expected a "
            "checkpoint with bands [1] (in_channels = context) for NIfTI input")
    if settings.context is not None and settings.context != spec.context:
        raise ConfigError(
            f"--context {settings.context} does not match {model.path}, trained with 2.5D context "
            f"{spec.context} ({spec.in_channels} input channels); drop --context or pass --context {spec.context}")
    return settings.resolved(spec)


def _open_volumes(path: Path, s: RunSettings) -> Iterator[Volume]:
    """The volumes to segment: decoded while they are segmented where the file allows it
    (``stream.open_streamed``: one 3D integer volume stored slice by slice), else read whole."""
    args = _series_args(s.series)
    if s.series != "each":
        vol = take_read_ahead(path, s.slice_axis) if args.get("volume") in (None, 0) else None
        vol = vol or open_streamed(path, slice_axis=s.slice_axis, volume=args.get("volume"))
        if vol is not None:
            return iter([vol])
    return iter_volumes(path, slice_axis=s.slice_axis, **args)


def _series_args(series: Any) -> dict[str, Any]:
    """RunSettings.series -> iter_volumes arguments."""
    if isinstance(series, bool) or not isinstance(series, (int, str)):
        raise ConfigError(f"series must be 'error', 'each' or a volume index, got {series!r}")
    if isinstance(series, int):
        return dict(volume=series, series_policy="select")
    return dict(series_policy=series)


def _total_slices(vol: Volume, series: Any) -> int:
    """Slices of every volume the run will segment (a series run with 'each' does them all)."""
    n = vol.shape[vol.slice_axis]
    return n * (vol.source_shape[3] if series == "each" and vol.volume_index is not None else 1)


class _VolumeRun:
    """State of one file's run: one predictor, one engine per volume shape, outputs and facts."""

    def __init__(self, model: ModelHandle, s: RunSettings, scene_dir: Path, progress: ProgressFn | None,
                 observers: Sequence[SliceObserver], total_slices: int) -> None:
        self.model, self.spec, self.s, self.scene_dir = model, model.spec, s, scene_dir
        self.progress, self.observers = progress, observers
        self.device = resolve_device(s.device)
        self.predictor = Predictor(model.module, self.spec, self.device, s.precision, s.tta)
        self.total_slices, self.slices_done, self.voxels_done = total_slices, 0, 0
        self.outputs: dict[str, Path] = {}
        self.volumes: list[dict[str, Any]] = []
        self.first: Volume | None = None
        self.grid: TileGrid | None = None
        self.timings = dict(read_s=0.0, decode_s=0.0, stats_s=0.0, read_wait_s=0.0, decode_wait_s=0.0, prepare_s=0.0,
                            infer_s=0.0, stitch_s=0.0, write_s=0.0, finalise_s=0.0)
        self._t0 = time.perf_counter()
        self._written: list[Path] = []
        self.qa_enabled = False
        self.qa: list[_VolumeQA] = []  # one per volume segmented

    def execute(self, first: Volume, rest: Any) -> None:
        """Segment ``first`` and then each further volume of ``rest``; on failure remove what was written."""
        self.first = first
        try:
            vol: Volume | None = first
            while vol is not None:
                self._segment(vol)
                vol = None  # drop it before the next one is converted: one float32 volume at a time
                t = time.perf_counter()
                vol = next(rest, None)
                self.timings["read_s"] += time.perf_counter() - t
        except BaseException:
            _remove(self._written)
            raise

    # -- one volume ------------------------------------------------------------------------
    def _segment(self, vol: Volume) -> None:
        tag = f"t{vol.volume_index}" if self.s.series == "each" and vol.volume_index is not None else ""
        axis, (h, w) = vol.slice_axis, plane_shape(vol.shape, vol.slice_axis)
        self.grid = TileGrid.build(h, w, self.s.tile, self.s.overlap)
        t = time.perf_counter()
        norm = self.spec.normalization
        if vol.arrival is not None and needs_whole_volume(norm):
            vol.arrival.finish()  # statistics of the whole volume: no slice can start before
        stats = volume_stats(vol.data, norm, vol.valid)
        self.timings["stats_s"] += time.perf_counter() - t
        engine = SliceEngine(self.predictor, self.grid, self.spec.num_classes, blend=self.s.blend,
                             context=self.s.context, batch_size=self.s.batch_for(self.device.type),
                             confidence=self.s.confidence or self.qa_enabled, probabilities=self.s.probabilities,
                             reducers=[BandTallier(self.spec.num_classes)])  # label counts and QA, on the device
        sinks = _Sinks(vol, self.spec, self.s)
        lv = LabelVolumes(vol.zooms, self.spec.class_names)
        observers = [lambda fs: _count(lv, fs), *map(_adapt, self.observers)]
        qa = None
        if self.qa_enabled:
            qa = SceneQA.for_volume((vol.shape[axis], h, w), float(np.prod(vol.zooms)) / 1000.0,
                                    self.spec.class_names, self.grid, colors=self.spec.colors(), threaded=True)
            observers.append(lambda fs: qa.observe_slice(fs.index, fs.labels, fs.valid, fs.confidence,
                                                         fs.entropy_sum, fs.tallies))
        writer = RowWriter(sinks.sinks, observers)
        try:
            for fs in engine.run(vol.data, vol.valid, axis, lambda p: apply(p, norm, stats), vol.arrival):
                writer.put(fs)
                self._report(h * w)
            writer.close()
            if vol.arrival is not None:
                vol.arrival.finish()  # the whole file read and its gzip trailer checked: now outputs may be written
                self.timings["decode_s"] += vol.arrival.seconds
        except BaseException:
            writer.close(abort=True)
            if vol.arrival is not None:
                vol.arrival.cancel()
            raise
        for k, v in engine.timings.items():
            self.timings[k] += v
        self.timings["write_s"] += writer.busy_s
        t = time.perf_counter()
        planes = _centre_planes(vol.data, sinks.labels.result()) if qa is not None else None
        outputs = self._write(sinks, vol, tag)
        self.timings["finalise_s"] += time.perf_counter() - t
        if qa is not None:
            qa.drain()
            problems = compare_geometry(nib.load(outputs[f"{tag}_labels" if tag else "labels"]).header, vol)
            self.qa.append(_VolumeQA(tag, vol.volume_index, qa, planes, lambda: problems, dict(outputs)))
        self._warn(vol, writer.valid_pixels)
        self.volumes.append(dict(
            index=vol.volume_index, tag=tag, series_note=vol.series_note, n_invalid=vol.n_invalid,
            valid_voxels=writer.valid_pixels, entropy_sum=writer.entropy_sum, normalization=stats,
            label_volumes=lv.result(), outputs={k: p.name for k, p in outputs.items()}))

    def _report(self, voxels_per_slice: int) -> None:
        self.slices_done += 1
        self.voxels_done += voxels_per_slice
        if self.progress is not None:
            self.progress(Progress(self.slices_done, self.total_slices, self.slices_done, self.total_slices,
                                   voxels_per_slice, time.perf_counter() - self._t0))

    def _write(self, sinks: _Sinks, vol: Volume, tag: str) -> dict[str, Path]:
        """Write the assembled volumes (labels first); each appears under its name only when checked."""
        stem = "_".join(x for x in (self.scene_dir.name, tag) if x)
        prefix = f"{tag}_" if tag else ""
        names, colors = self.spec.class_names, self.spec.colors()
        items: list[tuple[str, np.ndarray, str, str | None]] = [("labels", sinks.labels.result(), "labels", None)]
        if sinks.confidence is not None:
            items.append(("confidence", sinks.confidence.result(), "confidence", None))
        for name, safe, asm in zip(names, _file_safe(names), sinks.probabilities):
            items.append((f"probability_{safe}", asm.result(), "probability",
                          f"segpipe p({name}) x 254 of {vol.path.name}"))
        outputs = {}
        for key, data, kind, descrip in items:
            path = self.scene_dir / f"{stem}_{key}.nii.gz"
            self._written += [path, *_sidecars(path)]
            labels = kind == "labels"
            outputs[prefix + key] = write_label_volume(path, data, vol, label_names=names if labels else (),
                                                       colors=colors if labels else None, kind=kind,
                                                       description=descrip)
        self.outputs.update(outputs)
        return outputs

    def _warn(self, vol: Volume, valid_voxels: int) -> None:
        if vol.n_invalid:
            warnings.warn(f"{vol.path}: {vol.n_invalid} invalid (NaN/Inf) voxel(s) labelled 0 in the label volume "
                          f"and {CONF_NODATA} in confidence/probability volumes", SegpipeWarning, stacklevel=3)
        if valid_voxels == 0:
            warnings.warn(f"{vol.path}: no valid voxel; the label volume is all 0", SegpipeWarning, stacklevel=3)

    # -- facts -----------------------------------------------------------------------------
    def facts(self) -> dict[str, Any]:
        grid, vol = self.grid, self.first
        assert grid is not None and vol is not None
        facts: dict[str, Any] = dict(
            slice_axis=vol.slice_axis, context=self.s.context, plane_shape=[grid.height, grid.width],
            slices_total=self.slices_done, tiles_per_slice=grid.n_tiles, tiles_total=grid.n_tiles * self.slices_done,
            tiles_skipped=0, valid_voxels=sum(v["valid_voxels"] for v in self.volumes),
            valid_pixels=sum(v["valid_voxels"] for v in self.volumes),
            entropy_sum=sum(v["entropy_sum"] for v in self.volumes), n_volumes=len(self.volumes),
            volumes=self.volumes, oom_splits=self.predictor.oom_splits, device=str(self.device),
            precision=self.predictor.precision, precision_reason=self.predictor.precision_reason,
            peak_rss_mb=peak_rss_mb())
        if len(self.volumes) == 1:
            facts["label_volumes"] = self.volumes[0]["label_volumes"]
            facts["normalization"] = self.volumes[0]["normalization"]
        if self.device.type == "cuda":
            import torch

            facts["peak_gpu_mb"] = torch.cuda.max_memory_allocated(self.device) / 2**20
        return facts


def _centre_planes(image: np.ndarray, labels: np.ndarray) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """(grey, labels) slices through the volume's centre in the three canonical (RAS+) planes.

    Rows are flipped so that anterior/superior is up, as radiologists expect to see them.
    Copies: the volumes themselves are not kept alive for the report.
    """
    i, j, k = (n // 2 for n in image.shape)
    cut = {"axial": np.s_[:, :, k], "coronal": np.s_[:, j, :], "sagittal": np.s_[i, :, :]}
    return {name: (np.flipud(image[c].T).copy(), np.flipud(labels[c].T).copy()) for name, c in cut.items()}


@dataclass
class _VolumeQA:
    """What one volume's QA report needs once the record is complete."""

    tag: str  # "" for a single volume, "t<i>" for volume i of a series
    index: int | None
    qa: SceneQA
    planes: dict[str, tuple[np.ndarray, np.ndarray]] | None
    header_check: Callable[[], list[str]]
    outputs: dict[str, Path]


def _attach_series_qa(record: dict[str, Any], items: list[_VolumeQA], scene_dir: Path,
                      thresholds: QAThresholds | None) -> None:
    """One report per volume of a series (``qa_t<i>.json``/``.html``) and, as ``qa.json``/``qa.html``,
    a copy of the worst one: the run report shows one row per file, and a reviewer should
    see the volume that needs a look. The record lists every volume's verdict.

    As for single scenes (``qa_entry``), a bug in QA is recorded, never raised.
    """
    t = time.perf_counter()
    entries = [{"volume": it.index, **qa_entry(record, it.qa, scene_dir, it.outputs, thresholds,
                                               extra_checks={"nifti_header": it.header_check}, planes=it.planes,
                                               stem=f"qa_{it.tag}", title=f"{scene_dir.name} {it.tag}")}
               for it in items]
    worst = max(entries, key=lambda e: VERDICT_RANK.get(e["verdict"], len(VERDICT_RANK)))  # None: QA failed
    record["qa"] = {**worst, "volumes": entries}
    if worst.get("json"):
        for src, dst in ((worst["json"], QA_JSON), (worst["html"], QA_HTML)):
            write_text_atomic(scene_dir / dst, (scene_dir / src).read_text(encoding="utf-8"))
        record["qa"].update(json=QA_JSON, html=QA_HTML, worst=worst["json"])
    record["timings"]["qa_s"] = time.perf_counter() - t


class _Sinks:
    """Canonical-volume assemblers behind the scene writer's sink interface (``write(row0, array)``)."""

    def __init__(self, vol: Volume, spec: ModelSpec, s: RunSettings) -> None:
        shape, axis = vol.shape, vol.slice_axis
        self.labels = SliceAssembler(shape, axis, np.uint8 if spec.num_classes <= 256 else np.uint16, 0)
        self.confidence = SliceAssembler(shape, axis, np.uint8, CONF_NODATA) if s.confidence else None
        self.probabilities = [SliceAssembler(shape, axis, np.uint8, CONF_NODATA)
                              for _ in range(spec.num_classes)] if s.probabilities else []
        self.sinks: dict[str, Any] = {"mask": _Put(self.labels)}
        if self.confidence is not None:
            self.sinks["confidence"] = _Put(self.confidence)
        if self.probabilities:
            self.sinks["probabilities"] = _PutEach(self.probabilities)


class _Put:
    def __init__(self, asm: SliceAssembler) -> None:
        self.asm = asm

    def write(self, index: int, plane: np.ndarray) -> None:
        self.asm.put([index], plane[None])


class _PutEach:
    def __init__(self, asms: list[SliceAssembler]) -> None:
        self.asms = asms

    def write(self, index: int, planes: np.ndarray) -> None:
        for asm, plane in zip(self.asms, planes):
            asm.put([index], plane[None])


def _count(lv: LabelVolumes, fs: FinishedSlice) -> None:
    """Per-label voxels of a slice from its device tallies (row k of ``joint``: invalid voxels)."""
    per_label = fs.tallies["joint"].sum(axis=1)[:-1]
    lv.add_counts(per_label, invalid=fs.valid.size - fs.valid_pixels)


def _adapt(observer: SliceObserver) -> Callable[[FinishedSlice], None]:
    return lambda fs: observer(fs.index, fs.labels, fs.valid, fs.confidence)


def _file_safe(names: Sequence[str]) -> list[str]:
    """Class names usable in file names, made unique (``a b`` -> ``a_b``; duplicates get ``_<i>``)."""
    out: list[str] = []
    for i, name in enumerate(names):
        safe = re.sub(r"[^A-Za-z0-9_.-]+", "_", name).strip("._") or f"class{i}"
        out.append(safe if safe not in out else f"{safe}_{i}")
    return out


def _sidecars(path: Path) -> list[Path]:
    stem = path.name[: -len(".nii.gz")]
    return [path.with_name(stem + ext) for ext in (".labels.json", ".ctbl", ".itksnap.txt")]


def _remove(paths: list[Path]) -> None:
    for p in paths:
        try:
            p.unlink(missing_ok=True)
        except OSError as exc:
            log.warning("could not remove %s: %s", p, exc)


def _record(input_path: Path, input_sha: str, run: _VolumeRun, model: ModelHandle, s: RunSettings,
            msgs: list[str], started: str) -> dict[str, Any]:
    vol, timings = run.first, run.timings
    assert vol is not None
    hdr = vol.header
    x, y, z = vol.orientation.source_shape
    total = max(timings["total_s"], 1e-9)
    input_facts = {
        "width": x, "height": y, "depth": z, "shape": list(vol.source_shape),
        "canonical_shape": list(vol.shape), "zooms": [float(v) for v in hdr.get_zooms()[:3]],
        "canonical_zooms": list(vol.zooms), "dtype": vol.source_dtype, "scaling": list(vol.scaling),
        "orientation": "".join(vol.orientation.source_codes), "qform_code": int(hdr["qform_code"]),
        "sform_code": int(hdr["sform_code"]), "nifti_version": 2 if isinstance(hdr, nib.Nifti2Header) else 1,
        "series_note": "; ".join(v["series_note"] for v in run.volumes if v["series_note"]),
        "volumes": [v["index"] for v in run.volumes], "n_invalid": sum(v["n_invalid"] for v in run.volumes),
    }
    timings = {**timings, "slices_per_s": run.slices_done / total, "mpix_per_s": run.voxels_done / total / 1e6}
    return completion_record("volume", input_path, input_sha, input_facts, model, s, run.outputs, run.facts(),
                             timings, msgs, started)


__all__ = ["SliceObserver", "segment_volume"]
