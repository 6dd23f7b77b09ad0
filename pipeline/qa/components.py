"""Connected components of each class, counted while bands stream past.

Bands arrive in order along axis 0: row bands ``(h, W)`` of a scene, or single slices
``(1, H, W)`` of a volume. Each band is labelled on its own with
``scipy.ndimage.label``; the components still *open* (touching the band's last plane)
are kept as one plane of ids plus their sizes, and merged with the next band's
components that touch them. A component that does not reach the last plane is
finished: it is counted and forgotten. Memory is one band plus one plane, whatever
the scene size; the counts equal ``ndimage.label`` on the whole mask (tested).

Connectivity: ``"face"`` (4-neighbours in 2D, 6 in 3D; scipy's default) or
``"full"`` (8 / 26).

Classes are independent, and ``ndimage.label`` lets go of the GIL, so with ``workers > 1``
the classes of a band are labelled in that many threads at once (on a many-core GPU host
QA's thread must keep pace with the model; the counts are the same either way, tested).
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
from scipy import ndimage
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

from ..threads import pool

Connectivity = Literal["face", "full"]


@dataclass
class ComponentSummary:
    """Per class: how many components, the largest one, and whether any touches the image edge."""

    count: int = 0
    largest: int = 0
    largest_touches_edge: bool = False
    touches_edge: bool = False


@dataclass
class _Open:
    """Components touching the last plane seen: ids 1..m in ``plane`` (0 = none)."""

    plane: np.ndarray
    size: np.ndarray
    edge: np.ndarray


@dataclass
class StreamingComponents:
    """Counts connected components per class over bands streamed along axis 0.

    Args:
        num_classes: label values 0..num_classes-1 are tracked; others (nodata) are not.
        ndim: dimensions of a band (2: rows of a scene; 3: slices of a volume).
        connectivity: "face" or "full" neighbourhood.
        workers: threads labelling the classes of a band at once (1: in the caller's thread).
    """

    num_classes: int
    ndim: int = 2
    connectivity: Connectivity = "face"
    workers: int = 1
    _open: dict[int, _Open] = field(default_factory=dict, init=False)
    _summary: list[ComponentSummary] = field(init=False)
    _first: bool = field(default=True, init=False)
    _closed: bool = field(default=False, init=False)

    def __post_init__(self) -> None:
        rank = 1 if self.connectivity == "face" else self.ndim
        self._structure = ndimage.generate_binary_structure(self.ndim, rank)
        # Offsets along the plane axes by which a pixel of the previous plane touches one of the next.
        r = (-1, 0, 1) if self.connectivity == "full" else (0,)
        self._shifts = list(itertools.product(r, repeat=self.ndim - 1))
        self._summary = [ComponentSummary() for _ in range(self.num_classes)]
        self._pool = pool("components", self.workers) \
            if self.workers > 1 else None

    def update(self, labels: np.ndarray, present: np.ndarray | None = None) -> None:
        """Add the next band (class ids; values >= num_classes, e.g. nodata 255, are ignored).

        ``present`` (bool per class), when the caller already counted the band, saves a pass.
        """
        if labels.ndim != self.ndim:
            raise ValueError(f"expected a {self.ndim}-d band, got shape {labels.shape}")
        if self._closed:
            raise ValueError("components already closed; no more bands can be added")
        if present is None:
            present = np.bincount(np.minimum(labels, self.num_classes).ravel(), minlength=self.num_classes + 1) > 0
        classes = [c for c in range(self.num_classes) if present[c] or c in self._open]
        if self._pool is None or len(classes) < 2:
            for c in classes:
                self._update_class(c, labels == c)
        else:  # each class touches only its own state (_open[c], _summary[c])
            for f in [self._pool.submit(lambda c=c: self._update_class(c, labels == c)) for c in classes]:
                f.result()
        self._first = False

    def close(self) -> list[ComponentSummary]:
        """Finish: every still-open component touches the last plane (the image edge)."""
        if not self._closed:
            if self._pool is not None:
                self._pool.shutdown()
            for c, op in self._open.items():
                self._finish(c, op.size, np.ones_like(op.edge))
            self._open.clear()
            self._closed = True
        return self._summary

    # -- one class -----------------------------------------------------------------------
    def _update_class(self, c: int, mask: np.ndarray) -> None:
        lab, n = ndimage.label(mask, structure=self._structure)
        sizes = np.bincount(lab.ravel(), minlength=n + 1)[1:].astype(np.int64)
        edge = self._edge_labels(lab, n)
        op = self._open.pop(c, None)
        m = 0 if op is None else len(op.size)
        if m == 0:
            comp, n_groups = np.arange(n), n
        else:
            comp, n_groups = self._merge(op, lab[0], m, n)
        all_size = sizes if m == 0 else np.concatenate([op.size, sizes])
        all_edge = edge if m == 0 else np.concatenate([op.edge, edge])
        g_size = np.bincount(comp, weights=all_size, minlength=n_groups).astype(np.int64)
        g_edge = np.bincount(comp, weights=all_edge.astype(np.float64), minlength=n_groups) > 0
        last = lab[-1]
        cont = np.zeros(n_groups, dtype=bool)
        cont[comp[m + last[last > 0] - 1]] = True
        self._finish(c, g_size[~cont], g_edge[~cont])
        if cont.any():
            new_id = np.zeros(n_groups, dtype=np.int64)
            new_id[cont] = np.arange(1, int(cont.sum()) + 1)
            plane = np.zeros(last.shape, dtype=np.int64)
            plane[last > 0] = new_id[comp[m + last[last > 0] - 1]]
            self._open[c] = _Open(plane, g_size[cont], g_edge[cont])

    def _edge_labels(self, lab: np.ndarray, n: int) -> np.ndarray:
        """Which band components touch the image edge (plane axes' ends; first plane of the first band)."""
        edge = np.zeros(n + 1, dtype=bool)
        for axis in range(1, lab.ndim):
            edge[side(lab, axis, 0)] = True
            edge[side(lab, axis, -1)] = True
        if self._first:
            edge[lab[0]] = True
        return edge[1:]

    def _merge(self, op: _Open, first: np.ndarray, m: int, n: int) -> tuple[np.ndarray, int]:
        """Group open components (nodes 0..m-1) with this band's (m..m+n-1) where they touch."""
        a_all, b_all = [], []
        for shift in self._shifts:
            prev, cur = _shifted(op.plane, first, shift)
            both = (prev > 0) & (cur > 0)
            a_all.append(prev[both] - 1)
            b_all.append(cur[both] - 1 + m)
        a, b = np.concatenate(a_all), np.concatenate(b_all)
        graph = coo_matrix((np.ones(len(a), dtype=np.int8), (a, b)), shape=(m + n, m + n))
        n_groups, comp = connected_components(graph, directed=False)
        return comp, n_groups

    def _finish(self, c: int, sizes: np.ndarray, edges: np.ndarray) -> None:
        if len(sizes) == 0:
            return
        s = self._summary[c]
        s.count += len(sizes)
        s.touches_edge = s.touches_edge or bool(edges.any())
        i = int(np.argmax(sizes))
        if sizes[i] > s.largest:
            s.largest, s.largest_touches_edge = int(sizes[i]), bool(edges[i])


def side(a: np.ndarray, axis: int, index: int) -> np.ndarray:
    """``a`` at ``index`` along ``axis``, as a view (``np.take`` copies, and slowly, along a row's axis)."""
    key = [slice(None)] * a.ndim
    key[axis] = index
    return a[tuple(key)]


def _shifted(prev: np.ndarray, cur: np.ndarray, shift: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray]:
    """Views of ``prev`` and ``cur`` aligned so that ``prev[p]`` faces ``cur[p + shift]``."""
    ps, cs = [], []
    for d, n in zip(shift, prev.shape):
        ps.append(slice(max(0, -d), n - max(0, d)))
        cs.append(slice(max(0, d), n - max(0, -d)))
    return prev[tuple(ps)], cur[tuple(cs)]
