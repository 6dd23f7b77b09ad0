"""A volume's outputs: finished bands assembled into canonical volumes, written in the input's geometry.

    NAME_labels.nii.gz               uint8 labels (uint16 past 256 classes); 0 at invalid voxels
    NAME_labels.labels.json/.ctbl/.itksnap.txt   label names and colours
    NAME_confidence.nii.gz           optional: max probability x 254, 255 = invalid
    NAME_probability_<class>.nii.gz  optional, one per class: probability x 254, 255 = invalid

A volume of a 4D series run with ``series="each"`` has a ``_t<i>`` tag in its names. The
volumes are held as uint8 (never K float32 volumes) and written by ``finish``, which the
run calls only once the input has been read to its end (a ``.nii.gz``'s trailer checked).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch

from ...engine.bands import PROB_NODATA, Band, BandField, to_u8
from ...options import RunOptions
from ...readers.nifti.slicing import plane_shape
from ...readers.nifti.volume import Volume
from ...spec import ModelSpec
from ..base import Sink, remove
from .write import OutputKind, sidecars, write_label_volume


def encode_unit(p: np.ndarray, valid: np.ndarray | None = None) -> np.ndarray:
    """Probabilities/confidences in [0, 1] -> uint8 codes 0..254; 255 where invalid or NaN.

    The engine's encoder (``engine.bands.to_u8``) on host arrays.
    """
    p = np.asarray(p, dtype=np.float32)
    ok = ~np.isnan(p) if valid is None else (valid & ~np.isnan(p))
    return to_u8(torch.from_numpy(np.nan_to_num(p, nan=0.0)), torch.from_numpy(ok)).numpy()


class SliceAssembler:
    """Collects predicted 2D slices (or row bands of them) into a canonical-order volume.

    Args:
        shape: canonical volume shape.
        axis: the slicing axis the slices were cut along.
        dtype: output dtype (uint8 labels or confidence codes; uint16 past 255 labels).
        fill: initial value (0 = background; use PROB_NODATA for confidence volumes).
    """

    def __init__(self, shape: Sequence[int], axis: int, dtype: np.dtype | type = np.uint8, fill: int = 0):
        self.shape = tuple(int(s) for s in shape)
        self.axis = axis
        self.plane = plane_shape(self.shape, axis)
        # slice-major: each put is a contiguous copy; result() is a canonical-indexed view
        self._planes = np.full((self.shape[axis], *self.plane), fill, dtype=dtype)
        self._rows = np.zeros(self.shape[axis], dtype=np.int64)  # rows put, per slice

    def put(self, indices: Sequence[int] | np.ndarray, slices: np.ndarray) -> None:
        """Store (n, H, W) slices at slice ``indices`` along the axis."""
        idx = np.asarray(indices, dtype=np.int64).reshape(-1)
        expected = (idx.size, *self.plane)
        if tuple(slices.shape) != expected:
            raise ValueError(f"expected slices of shape {expected}, got {slices.shape}")
        self._planes[idx] = slices
        self._rows[idx] = self.plane[0]

    def put_rows(self, index: int, row0: int, rows: np.ndarray) -> None:
        """Store rows ``[row0, row0 + h)`` of slice ``index`` (bands of a slice arrive top to bottom)."""
        if rows.shape[1:] != self.plane[1:] or row0 + rows.shape[0] > self.plane[0]:
            raise ValueError(f"rows {row0}..{row0 + rows.shape[0]} of shape {rows.shape} do not fit a plane {self.plane}")
        self._planes[index, row0 : row0 + rows.shape[0]] = rows
        self._rows[index] += rows.shape[0]

    @property
    def missing(self) -> np.ndarray:
        """Slice indices not (completely) put yet."""
        return np.flatnonzero(self._rows < self.plane[0])

    def result(self) -> np.ndarray:
        """The assembled volume, canonical-indexed (a view, slice-major in memory); raises if a slice is missing."""
        if self.missing.size:
            raise RuntimeError(f"{self.missing.size} of {self.shape[self.axis]} slices were never put "
                               f"(first: {self.missing[:5].tolist()})")
        return np.moveaxis(self._planes, 0, self.axis)


class VolumeSink:
    """One output volume (or one per class, for probabilities) fed one band field."""

    def __init__(self, vol: Volume, files: Sequence[tuple[str, Path, str | None]], field: BandField,
                 kind: OutputKind, dtype: type, fill: int, spec: ModelSpec) -> None:
        self.vol, self.files, self.field, self.kind, self.spec = vol, list(files), field, kind, spec
        self.consumes: tuple[BandField, ...] = (field,)
        self.assemblers = [SliceAssembler(vol.shape, vol.slice_axis, dtype, fill) for _ in self.files]
        self._written: list[Path] = []

    def write(self, band: Band) -> None:
        rows = getattr(band, self.field)
        if len(self.assemblers) == 1:
            self.assemblers[0].put_rows(band.plane, band.row0, rows)
        else:
            for asm, plane in zip(self.assemblers, rows):
                asm.put_rows(band.plane, band.row0, plane)

    def finish(self) -> dict[str, Path]:
        out = {}
        labels = self.kind == "labels"
        for (key, path, description), asm in zip(self.files, self.assemblers):
            self._written += [path, *sidecars(path, self.kind)]
            out[key] = write_label_volume(
                path, asm.result(), self.vol, label_names=self.spec.class_names if labels else (),
                colors=self.spec.colors() if labels else None, kind=self.kind, description=description)
        return out

    def abort(self) -> None:
        for p in self._written:
            remove(p)


def volume_sinks(vol: Volume, spec: ModelSpec, options: RunOptions, folder: Path,
                 tag: str) -> list[Callable[[], Sink]]:
    """The makers of one volume's sinks; ``tag`` (``t<i>``) names a volume of a series."""
    stem = "_".join(x for x in (folder.name, tag) if x)
    prefix = f"{tag}_" if tag else ""

    def file(key: str, description: str | None = None) -> tuple[str, Path, str | None]:
        return prefix + key, folder / f"{stem}_{key}.nii.gz", description

    dtype = np.uint8 if spec.num_classes <= 256 else np.uint16
    makers = [lambda: VolumeSink(vol, [file("labels")], "labels", "labels", dtype, 0, spec)]
    if options.confidence:
        makers.append(lambda: VolumeSink(vol, [file("confidence")], "confidence", "confidence", np.uint8,
                                         PROB_NODATA, spec))
    if options.probabilities:
        files = [file(f"probability_{safe}", f"segpipe p({name}) x 254 of {vol.path.name}")
                 for name, safe in zip(spec.class_names, file_safe(spec.class_names))]
        makers.append(lambda: VolumeSink(vol, files, "probabilities", "probability", np.uint8, PROB_NODATA, spec))
    return makers


def file_safe(names: Sequence[str]) -> list[str]:
    """Class names usable in file names, made unique (``a b`` -> ``a_b``; duplicates get ``_<i>``)."""
    out: list[str] = []
    for i, name in enumerate(names):
        safe = re.sub(r"[^A-Za-z0-9_.-]+", "_", name).strip("._") or f"class{i}"
        out.append(safe if safe not in out else f"{safe}_{i}")
    return out
