"""Per-scene statistics gathered while the engine streams its output.

:class:`SceneQA` is a band observer: ``segment_file(..., observers=[qa])`` hands it each
finished :class:`~pipeline.engine.bands.Band` in row order (in the writer thread). A volume
feeds it slice by slice with :meth:`SceneQA.observe_slice`. It never holds more than
one band, one plane and small per-class / per-column counters, plus thumbnail-sized
grids, so QA memory does not grow with the scene.

The per-pixel counting (classes x confidence, valid pixels, label changes for the seam
score) is :class:`~pipeline.qa.tally.BandTallier`: during a run the stitcher calls it on the
device (``SceneQA.band_reducer``) and ships the small results with each band; fed plain
arrays, SceneQA runs it on the host. What stays on the host per band is connected components
(on a decimated grid above 64 Mpix), the thumbnails and the edge / nodata-contact flags.
"""

from __future__ import annotations

import math
import os
import time
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from ..threads import Consumer
from ..tiling import TileGrid
from .area import PixelArea, pixel_area, voxel_volume
from .components import Connectivity, StreamingComponents, side
from .schema import AreaInfo, ClassStats, ConfidenceStats, SeamStats
from .seams import SeamAccumulator
from .tally import TALLY_KEYS, UNSURE_KEY, BandTallier, host_tensor, unsure_cells
from .confidence import HIST_BINS, class_confidence, confidence_stats
from .thumbgrid import SceneThumbs, VolumePlanes

UNSURE_BELOW = 0.9  # "unsure": less than 90 % sure (the scene page's picture of where)


@dataclass(frozen=True)
class QAStats:
    """What the streaming pass found; the report is built from it."""

    kind: Literal["scene", "volume"]
    valid_pixels: int
    total_pixels: int
    area: AreaInfo
    classes: list[ClassStats]
    confidence: ConfidenceStats | None
    mean_entropy: float | None
    seams: SeamStats | None
    label_thumb: np.ndarray | None
    unsure_thumb: np.ndarray | None  # share of each thumbnail cell's valid pixels below ``unsure_threshold``
    observe_s: float
    input_thumb: tuple[np.ndarray, np.ndarray] | None = None  # (bands, h, w) data and validity
    unsure_threshold: float | None = None  # the threshold ``unsure_thumb`` counted against
    confidence_planes: dict[int, np.ndarray] | None = None  # volumes: fixed canonical axis -> centre plane

    @property
    def valid_fraction(self) -> float:
        return self.valid_pixels / self.total_pixels if self.total_pixels else 0.0


# Components are counted at full resolution up to this size (pixels or voxels, in millions).
COMPONENTS_MAX_MPIX = 64.0
# A volume's slices are labelled this many at a time (one ndimage.label per class and slab):
# slice by slice, the per-call overhead was most of QA's time (bench/RESULTS.md).
COMPONENT_SLAB = 8


class SceneQA:
    """Streaming QA accumulator for one scene (row bands) or one volume (slices).

    Args:
        class_names: label i is class_names[i]; other values (nodata) are ignored.
        height, width: the image (or the volume's slice plane) size.
        grid: the tiling, for the seam score (None: no seam score).
        area: pixel area / voxel volume (:func:`~pipeline.qa.area.pixel_area`).
        depth: number of slices for a volume (None: a 2D scene).
        colors: RGB per class, for the report.
        connectivity: neighbourhood for connected components.
        components: count connected components (the costliest statistic: one
            ``ndimage.label`` per class and band; off, components are reported as unknown).
        components_max_mpix: above this many pixels/voxels, components are counted on every
            n-th row and column (n = ``components_step``, reported per class) so that QA keeps
            up with a GPU: objects narrower than n pixels can be missed and the largest
            component's size is scaled by n squared. Counts, areas and flags stay exact.
        thumb_side: longest side of the streamed label/input/unsure thumbnails.
        unsure_below: the confidence the "where the model is unsure" thumbnail counts pixels
            below. Higher than the verdict's ``low_confidence`` (0.5) on purpose: a good model
            has almost no pixel below 0.5, yet a reviewer wants to see where it hesitates.
        slice_axis: volumes: the canonical axis the slices run along; given, the confidence of
            the three centre planes is kept for the report's pictures.
        threaded: do the work in a thread of its own, so the engine's writer thread only
            hands bands over (a bounded queue of 2 keeps memory flat).
        component_workers: threads labelling classes at once (default: one per 4 CPU cores,
            at most one per class; 1 on a small machine, where the model needs the cores).
    """

    def __init__(self, class_names: tuple[str, ...] | list[str], height: int, width: int,
                 grid: TileGrid | None = None, area: PixelArea | None = None, *, depth: int | None = None,
                 colors: list[tuple[int, int, int]] | None = None, connectivity: Connectivity = "face",
                 components: bool = True, thumb_side: int = 512, threaded: bool = False,
                 components_max_mpix: float = COMPONENTS_MAX_MPIX, component_workers: int | None = None,
                 unsure_below: float = UNSURE_BELOW, slice_axis: int | None = None) -> None:
        self.class_names = list(class_names)
        self.colors = [list(c) for c in colors] if colors else []
        self.k = len(self.class_names)
        self.height, self.width, self.depth = height, width, depth
        self.kind: Literal["scene", "volume"] = "scene" if depth is None else "volume"
        self.area = area or PixelArea("pixel", None, True, "no pixel size given")
        if component_workers is None:
            component_workers = min(self.k, max(1, (os.cpu_count() or 1) // 4))
        self.components = StreamingComponents(self.k, 2 if depth is None else 3, connectivity,
                                              workers=component_workers) if components else None
        pixels = height * width * (depth or 1)
        self.components_step = max(1, math.ceil(math.sqrt(pixels / (components_max_mpix * 1e6))))
        self._slab: list[np.ndarray] = []  # a volume's slices waiting to be labelled together
        self.touches_edge = np.zeros(self.k, dtype=bool)
        fn = self._observe_band if depth is None else self._observe_slice
        self._worker = Consumer(lambda item: fn(*item), role="qa", maxsize=2) if threaded else None
        self.seams = SeamAccumulator(grid) if grid is not None else None
        self.thumbs = SceneThumbs(height, width, thumb_side, unsure_below) if depth is None else None
        self.planes = VolumePlanes(depth, height, width, slice_axis) \
            if depth is not None and slice_axis is not None else None
        # the host path: bands that came without tallies
        self._tallier = BandTallier(self.k, self.thumbs.cells if self.thumbs is not None else None)
        self.counts = np.zeros(self.k, dtype=np.int64)
        self.area_m2 = np.zeros(self.k, dtype=np.float64)
        self.conf_joint: np.ndarray | None = None  # (K, 256) pixels per class and confidence byte
        self.entropy_sum = 0.0
        self.valid_pixels = 0
        self.total_pixels = 0
        self.touches_nodata = np.zeros(self.k, dtype=bool)
        self._prev: tuple[np.ndarray, np.ndarray] | None = None  # last plane's labels, valid
        self._next = 0
        self.busy_s = 0.0

    @classmethod
    def for_scene(cls, info: Any, grid: TileGrid, class_names: tuple[str, ...],
                  colors: tuple[tuple[int, int, int], ...] | None = None, **kw: Any) -> SceneQA:
        """For a raster: ``info`` is the scene's :class:`~pipeline.readers.geotiff.RasterInfo`."""
        area = pixel_area(info.crs, info.transform, info.width, info.height)
        return cls(class_names, info.height, info.width, grid, area, colors=list(colors or ()), **kw)

    @classmethod
    def for_volume(cls, shape: tuple[int, int, int], voxel_ml: float, class_names: tuple[str, ...],
                   grid: TileGrid | None = None, **kw: Any) -> SceneQA:
        """For a volume streamed as ``shape[0]`` slices of ``shape[1] x shape[2]``."""
        depth, h, w = shape
        return cls(class_names, h, w, grid, voxel_volume(voxel_ml), depth=depth, **kw)

    # -- feeding -----------------------------------------------------------------------------
    def band_reducer(self) -> BandTallier:
        """A tallier for the stitcher to run on each finished band on its device (one per run)."""
        return BandTallier(self.k, self.thumbs.cells if self.thumbs is not None else None)

    def __call__(self, band: Any) -> None:
        """Band observer for a scene's run: takes a :class:`~pipeline.engine.bands.Band`."""
        self.observe(band.row0, band.labels, band.valid, band.confidence, band.entropy_sum, band.tallies)

    def observe(self, row0: int, labels: np.ndarray, valid: np.ndarray, confidence: np.ndarray | None = None,
                entropy_sum: float = 0.0, tallies: dict[str, np.ndarray] | None = None) -> None:
        """Rows ``[row0, row0 + h)`` of a scene, in order (arrays must not be modified afterwards).

        ``tallies``: this band's :class:`~pipeline.qa.tally.BandTallier` results when the
        stitcher computed them on its device; None (or incomplete) computes them here.
        """
        if self.kind != "scene":
            raise ValueError("a volume's QA takes slices: use observe_slice()")
        if row0 != self._next:
            raise ValueError(f"rows must arrive in order: got row {row0}, expected {self._next}")
        self._next = row0 + labels.shape[0]
        if self._worker is not None:
            self._worker.put((row0, labels, valid, confidence, entropy_sum, tallies))
        else:
            self._observe_band(row0, labels, valid, confidence, entropy_sum, tallies)

    def _tallies(self, row0: int, labels: np.ndarray, valid: np.ndarray, confidence: np.ndarray | None,
                 tallies: dict[str, np.ndarray] | None) -> dict[str, np.ndarray]:
        if tallies is not None and all(k in tallies for k in TALLY_KEYS):
            return tallies
        return self._tallier.host(row0, labels, valid, confidence)

    def _observe_band(self, row0: int, labels: np.ndarray, valid: np.ndarray, confidence: np.ndarray | None,
                      entropy_sum: float, tallies: dict[str, np.ndarray] | None) -> None:
        t = time.perf_counter()
        tallies = self._tallies(row0, labels, valid, confidence, tallies)
        self._accumulate(labels, valid, confidence, entropy_sum, row0, tallies)
        if self.seams is not None:
            self.seams.add(row0, tallies["seam_cols"], tallies["seam_rows"])
        assert self.thumbs is not None
        self.thumbs.add_labels(row0, labels, valid)
        if confidence is not None:
            cells = tallies.get(UNSURE_KEY)
            if cells is None:  # the band's tallier had no thumbnail grid: count here
                cells = unsure_cells(row0, host_tensor(valid), host_tensor(confidence), self.thumbs.cells).numpy()
            self.thumbs.add_unsure(row0, cells)
        self.busy_s += time.perf_counter() - t

    def observe_slice(self, index: int, labels: np.ndarray, valid: np.ndarray,
                      confidence: np.ndarray | None = None, entropy_sum: float = 0.0,
                      tallies: dict[str, np.ndarray] | None = None) -> None:
        """Slice ``index`` (2D plane and its valid mask) of a volume, in order (``tallies`` as for scenes)."""
        if self.kind != "volume":
            raise ValueError("a scene's QA takes row bands: use observe() or pass the observer to segment_file")
        if index != self._next:
            raise ValueError(f"slices must arrive in order: got slice {index}, expected {self._next}")
        self._next = index + 1
        if self._worker is not None:
            self._worker.put((index, labels, valid, confidence, entropy_sum, tallies))
        else:
            self._observe_slice(index, labels, valid, confidence, entropy_sum, tallies)

    def _observe_slice(self, index: int, labels: np.ndarray, valid: np.ndarray, confidence: np.ndarray | None,
                       entropy_sum: float, tallies: dict[str, np.ndarray] | None) -> None:
        t = time.perf_counter()
        tallies = self._tallies(0, labels, valid, confidence, tallies)  # row 0: each slice is a plane of its own
        self._accumulate(labels[None], valid[None], None if confidence is None else confidence[None],
                         entropy_sum, index, tallies)
        if self.seams is not None:
            self.seams.add(0, tallies["seam_cols"], tallies["seam_rows"])
        if self.planes is not None and confidence is not None:
            self.planes.add(index, confidence, valid)
        self.busy_s += time.perf_counter() - t

    def _accumulate(self, labels: np.ndarray, valid: np.ndarray, conf: np.ndarray | None,
                    entropy_sum: float, row0: int, tallies: dict[str, np.ndarray]) -> None:
        """One band (h, W) of a scene from row ``row0``, or one slice (1, H, W) with index ``row0``."""
        k = self.k
        joint = tallies["joint"]  # (k+1, 256): class id (k: invalid) x confidence byte
        band_counts = joint.sum(axis=1)
        self.counts += band_counts[:k]
        if self.area.varies_by_row:  # geographic: each row its own pixel area (scene rows only)
            h, lab = labels.shape[0], self._ids(labels, valid)
            per_row = np.bincount((lab + (k + 1) * np.arange(h)[:, None]).ravel(), minlength=h * (k + 1))
            self.area_m2 += per_row.reshape(h, k + 1)[:, :k].T @ self.area.rows(row0, h)
        if conf is not None:
            if self.conf_joint is None:
                self.conf_joint = np.zeros((k, 256), dtype=np.int64)
            self.conf_joint += joint[:k]
        self.entropy_sum += float(entropy_sum)
        self.valid_pixels += int(tallies["valid"])
        self.total_pixels += valid.size
        self._nodata_contact(labels, valid)
        self._edges(labels, valid, row0)
        if self.components is not None:
            step = self.components_step
            if self.kind == "volume":  # every slice, decimated in-plane when step > 1, labelled by slabs
                self._slab.append(self._ids(labels[:, ::step, ::step], valid[:, ::step, ::step]))
                if len(self._slab) == COMPONENT_SLAB or row0 == self.depth - 1:
                    self.components.update(np.concatenate(self._slab))
                    self._slab = []
            elif step == 1:
                self.components.update(self._ids(labels, valid), present=band_counts[:k] > 0)
            else:  # every step-th image row (global index) and column
                first = (-row0) % step
                if first < labels.shape[0]:
                    self.components.update(self._ids(labels[first::step, ::step], valid[first::step, ::step]))

    def _ids(self, labels: np.ndarray, valid: np.ndarray) -> np.ndarray:
        """Class ids with every invalid or out-of-range pixel mapped to k ("not a class"); a new array."""
        k = self.k
        return np.where(valid, np.minimum(labels, k), k).astype(np.uint8 if k < 255 else np.int64)

    def _edges(self, labels: np.ndarray, valid: np.ndarray, row0: int) -> None:
        """Flag classes on the image edge: plane sides of every band, first and last plane.

        ``row0`` is the band's first row (scenes) or the slice index (volumes).
        """
        parts = [self._ids(side(labels, a, i), side(valid, a, i)).ravel() for a in range(1, labels.ndim) for i in (0, -1)]
        last = (self.height if self.kind == "scene" else self.depth) - 1
        if row0 == 0:
            parts.append(self._ids(labels[0], valid[0]).ravel())
        if row0 + labels.shape[0] - 1 == last:
            parts.append(self._ids(labels[-1], valid[-1]).ravel())
        self._flag(np.concatenate(parts), self.touches_edge)

    def _nodata_contact(self, labels: np.ndarray, valid: np.ndarray) -> None:
        """Flag classes with a pixel next to nodata (face neighbours, across bands too)."""
        inv = ~valid
        prev = self._prev
        if not inv.any() and (prev is None or prev[1].all()):  # the rule inside a scene: nothing to flag
            self._prev = (self._ids(labels[-1], valid[-1]), valid[-1].copy())
            return
        near = np.zeros_like(inv)
        for axis in range(inv.ndim):
            n = inv.shape[axis]
            if n < 2:
                continue
            a = [slice(None)] * inv.ndim
            b = [slice(None)] * inv.ndim
            a[axis], b[axis] = slice(1, None), slice(None, -1)
            near[tuple(a)] |= inv[tuple(b)]
            near[tuple(b)] |= inv[tuple(a)]
        if prev is not None:
            prev_lab, prev_valid = prev
            near[0] |= ~prev_valid
            self._flag(prev_lab[inv[0]], self.touches_nodata)
        self._flag(np.minimum(labels[near & valid], self.k), self.touches_nodata)
        self._prev = (self._ids(labels[-1], valid[-1]), valid[-1].copy())

    def _flag(self, labs: np.ndarray, flags: np.ndarray) -> None:
        if labs.size:
            hit = np.flatnonzero(np.bincount(labs, minlength=self.k + 1)[: self.k])
            flags[hit] = True

    def observe_input(self, row0: int, data: np.ndarray, valid: np.ndarray) -> None:
        """Sample the input's first three bands for the thumbnail while the engine streams it.

        ``data`` (B, h, W) and ``valid`` (h, W) are rows ``[row0, row0 + h)`` of the scene; strips
        may overlap. Reading a thumbnail back from a scene without overviews would decode all of
        it again, so the engine feeds it here instead.
        """
        if self.thumbs is not None:
            self.thumbs.add_input(row0, data, valid)

    # -- results -------------------------------------------------------------------------
    def drain(self) -> None:
        """Wait until every band handed over so far is observed and stop the worker thread
        (a series keeps one SceneQA per volume until the end: no idle thread each)."""
        if self._worker is not None:
            self._worker.close()

    def result(self, low_confidence: float = 0.5, hist_bins: int = HIST_BINS) -> QAStats:
        """Close the accumulators and summarise (call once, after the last band)."""
        expected = self.height if self.depth is None else self.depth
        if self._next != expected:
            raise ValueError(f"QA saw {self._next} of {expected} {'rows' if self.depth is None else 'slices'}")
        if self._worker is not None:
            self._worker.close()
        comps = self.components.close() if self.components is not None else None
        valid = max(self.valid_pixels, 1)
        per_class_conf = class_confidence(self.conf_joint, self.k, low_confidence, hist_bins)
        classes = []
        for c, name in enumerate(self.class_names):
            classes.append(ClassStats(
                index=c, name=name, color=self.colors[c] if c < len(self.colors) else [],
                pixels=int(self.counts[c]), fraction=float(self.counts[c] / valid),
                **self._class_size(c), components=comps[c].count if comps else None,
                largest_component=comps[c].largest * self.components_step ** 2 if comps else None,
                components_step=self.components_step if comps else None,
                largest_touches_border=comps[c].largest_touches_edge if comps else None,
                touches_border=bool(self.touches_edge[c]),
                touches_nodata=bool(self.touches_nodata[c]), **per_class_conf[c],
            ))
        seams = None
        if self.seams is not None:
            r = self.seams.result()
            seams = SeamStats(score=r.score, border_rate=r.border_rate, interior_rate=r.interior_rate,
                              border_pairs=r.border_pairs, interior_pairs=r.interior_pairs)
        mean_entropy = self.entropy_sum / self.valid_pixels if self.valid_pixels else None
        return QAStats(
            kind=self.kind, valid_pixels=self.valid_pixels, total_pixels=self.total_pixels, area=self.area.info(),
            classes=classes, confidence=confidence_stats(self.conf_joint, self.valid_pixels, low_confidence, hist_bins,
                                                         mean_entropy),
            mean_entropy=mean_entropy, seams=seams,
            label_thumb=self.thumbs.labels if self.thumbs else None,
            unsure_thumb=self.thumbs.unsure_share() if self.thumbs else None,
            input_thumb=self.thumbs.input if self.thumbs else None,
            unsure_threshold=self.thumbs.unsure_below if self.thumbs else None,
            confidence_planes=self.planes.canonical() if self.planes is not None and self.conf_joint is not None
            else None,
            observe_s=self.busy_s,
        )

    def _class_size(self, c: int) -> dict[str, float | None]:
        a = self.area
        if a.unit == "ml":
            return {"volume_ml": float(self.counts[c] * a.per_pixel)}
        if a.unit != "m2":
            return {}
        m2 = float(self.area_m2[c]) if a.varies_by_row else float(self.counts[c] * a.per_pixel)
        return {"area_m2": m2, "area_ha": m2 / 1e4}
