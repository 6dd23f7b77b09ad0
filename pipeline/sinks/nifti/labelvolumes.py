"""Per-label voxel counts and volumes in millilitres, accumulated slice by slice.

Voxel volume comes from the header zooms (pixdim), in mm: ``prod(zooms[:3])`` mm^3, and
1 mL = 1000 mm^3. Spacing is often anisotropic (0.7 x 0.7 x 5 mm), so counts are never
turned into volumes with an assumed 1 mm^3. Only the voxel count depends on the data, so
the accumulator takes slices as the stitcher finishes them and never needs the volume.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

MM3_PER_ML = 1000.0


class LabelVolumes:
    """Accumulates per-label voxel counts over label slices (any shape, any order).

    Args:
        zooms: voxel spacing in mm (first three used; canonical or source order alike).
        label_names: one name per label value; labels present beyond them are named
            ``label_<value>``. Named labels are reported even when absent (0 mL).
    """

    def __init__(self, zooms: Sequence[float], label_names: Sequence[str] = ()):
        if len(zooms) < 3 or any(not (z > 0 and math.isfinite(z)) for z in zooms[:3]):
            raise ValueError(f"expected three positive voxel spacings, got {tuple(zooms)}")
        self.voxel_mm3 = float(np.prod(np.asarray(zooms[:3], dtype=np.float64)))
        self.names = tuple(label_names)
        self._counts = np.zeros(max(len(self.names), 1), dtype=np.int64)
        self._invalid = 0

    def add(self, label_slice: np.ndarray, valid: np.ndarray | None = None) -> None:
        """Count the labels of one slice (or slab); voxels where ``valid`` is False are skipped."""
        labels = np.asarray(label_slice)
        if labels.dtype.kind not in "biu":
            raise ValueError(f"labels must be integers, got {labels.dtype}")
        if valid is not None:
            self._invalid += int(valid.size - np.count_nonzero(valid))
            labels = labels[valid]
        if labels.size == 0:
            return
        if labels.min() < 0:
            raise ValueError(f"label values must be >= 0, got {labels.min()}")
        counts = np.bincount(labels.reshape(-1), minlength=self._counts.size)
        if counts.size > self._counts.size:
            self._counts = np.pad(self._counts, (0, counts.size - self._counts.size))
        self._counts += counts

    def add_counts(self, counts: np.ndarray, invalid: int = 0) -> None:
        """Add voxel counts per label value (``counts[v]``: voxels labelled v) already tallied elsewhere."""
        counts = np.asarray(counts, dtype=np.int64)
        if counts.size > self._counts.size:
            self._counts = np.pad(self._counts, (0, counts.size - self._counts.size))
        self._counts[: counts.size] += counts
        self._invalid += int(invalid)

    def result(self) -> dict[str, Any]:
        """JSON-ready summary: voxel volume, totals and one entry per label value."""
        labels = []
        for value, count in enumerate(self._counts.tolist()):
            name = self.names[value] if value < len(self.names) else f"label_{value}"
            if value >= len(self.names) and count == 0:
                continue
            labels.append({"value": value, "name": name, "voxels": int(count),
                           "volume_ml": count * self.voxel_mm3 / MM3_PER_ML})
        return {"voxel_volume_mm3": self.voxel_mm3, "voxels": int(self._counts.sum()),
                "invalid_voxels": self._invalid, "labels": labels}


def label_volumes(labels: np.ndarray, zooms: Sequence[float], label_names: Sequence[str] = (),
                  valid: np.ndarray | None = None) -> dict[str, Any]:
    """:class:`LabelVolumes` over a whole label array at once."""
    acc = LabelVolumes(zooms, label_names)
    acc.add(labels, valid)
    return acc.result()


class LabelCounts:
    """A sink without files: per-label voxel counts of a volume's bands, from their device tallies.

    Row k of a band's ``joint`` tally counts its invalid voxels (``pipeline.qa.tally``).
    """

    consumes = ("labels",)

    def __init__(self, zooms: Sequence[float], label_names: Sequence[str] = ()) -> None:
        self.volumes = LabelVolumes(zooms, label_names)

    def write(self, band: Any) -> None:
        per_label = band.tallies["joint"].sum(axis=1)[:-1]
        self.volumes.add_counts(per_label, invalid=band.valid.size - band.valid_pixels)

    def finish(self) -> dict[str, Any]:
        return {}

    def abort(self) -> None:
        pass
