"""Validation through the production engine: what is measured is what production does.

Each held-out scene is segmented by the production run (``pipeline.run.segment_file``: tiling,
blending, stitching, nodata handling, COG writing) into a temporary folder, and the written
mask is compared with the label raster. Volumes go the same way (canonical orientation, 2.5D
slabs, writing back in the input's geometry)
and the written label volume is compared with the label NIfTI voxel by voxel, both in
the file's own voxel order.
"""

from __future__ import annotations

import logging
import shutil
import tempfile
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np
import rasterio
import torch

from pipeline.errors import SegpipeWarning
from pipeline.options import RunOptions
from pipeline.spec import ModelSpec

from .dataset import IGNORE_INDEX, Pair, read_scene_pair
from .metrics import Scores, confusion, scores

log = logging.getLogger(__name__)


@dataclass
class TrainingHandle:
    """A model being trained, shaped like a loaded checkpoint for the engine (``ModelHandle``)."""

    module: torch.nn.Module
    spec: ModelSpec
    path: Path
    sha256: str = "in-training"


@dataclass(frozen=True)
class Validation:
    """Scores over all held-out inputs, and each input's own."""

    scores: Scores
    per_input: dict[str, dict[str, Any]]
    engine: str

    def to_dict(self) -> dict[str, Any]:
        return {**self.scores.to_dict(), "engine": self.engine, "per_input": self.per_input}


def validate(handle: Any, pairs: Sequence[Pair], settings: RunOptions, work_dir: str | Path | None = None) -> Validation:
    """Segment ``pairs`` with the engine and score the outputs against their labels.

    Args:
        handle: anything with module, spec, sha256, path (a checkpoint or a TrainingHandle).
        settings: run settings (device, tile, overlap, batch size...), as in production.
        work_dir: where outputs are written (a temporary folder, removed afterwards, if None).
    """
    spec = handle.spec
    k = spec.num_classes
    total = np.zeros((k, k + 1), dtype=np.int64)
    per_input: dict[str, dict[str, Any]] = {}
    own_tmp = work_dir is None
    root = Path(tempfile.mkdtemp(prefix="segpipe-val-")) if own_tmp else Path(work_dir)
    was_training = handle.module.training
    engine = "pipeline.run.segment_file"
    try:
        for pair in pairs:
            if pair.kind == "scene":
                cm = _scene(handle, pair, settings, root)
            else:
                cm = _volume(handle, pair, settings, root)
            total += cm
            s = scores(cm, spec.class_names)
            per_input[pair.name] = {"mean_iou": s.mean_iou, "iou": dict(zip(spec.class_names, s.iou))}
    finally:
        handle.module.train(was_training)
        if own_tmp:
            shutil.rmtree(root, ignore_errors=True)
    return Validation(scores(total, spec.class_names), per_input, engine)


def _scene(handle: Any, pair: Pair, settings: RunOptions, root: Path) -> np.ndarray:
    from pipeline.run import segment_file

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SegpipeWarning)  # e.g. "uses bands 1-3 of 4": expected here
        result = segment_file(pair.image, handle, root, settings)
    truth = read_scene_pair(pair, handle.spec.bands)  # labels are IGNORE_INDEX where the image is invalid
    with rasterio.open(result.outputs["mask"]) as ds:
        pred, nodata = ds.read(1), ds.nodata
    shutil.rmtree(result.scene_dir, ignore_errors=True)
    return confusion(truth.label, pred, handle.spec.num_classes, None if nodata is None else int(nodata))


def _volume(handle: Any, pair: Pair, settings: RunOptions, root: Path) -> np.ndarray:
    from pipeline.run import segment_file

    label = np.rint(np.asarray(nib.load(pair.label).dataobj, dtype=np.float32)).astype(np.int64)
    label = np.where((label < 0) | (label > IGNORE_INDEX), IGNORE_INDEX, label).astype(np.uint8)
    result = segment_file(pair.image, handle, root, settings)
    pred = np.asarray(nib.load(result.outputs["labels"]).dataobj)
    shutil.rmtree(result.scene_dir, ignore_errors=True)
    label = label.reshape(pred.shape) if label.size == pred.size else label
    return confusion(label, pred, handle.spec.num_classes, None)
