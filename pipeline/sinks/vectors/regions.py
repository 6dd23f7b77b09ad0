"""Connected regions of a class map as polygons, band by band, merged exactly across the seams.

A scene's class map arrives as row bands, top to bottom, and is never whole in memory. Each
band's regions are labelled (``scipy.ndimage.label`` per class, 4-connectivity: pixels that
share an edge; two pixels touching at a corner are two regions, as GDAL's polygonize and
QA's component counts have it) and polygonised by GDAL (``rasterio.features.shapes`` on the
label image: one polygon per label, holes included). Coordinates are pixel corners, integers,
so polygons that meet on a seam share their edge exactly and ``shapely.unary_union`` joins
them without slivers.

Only regions that reach a band's last row can grow: they are held *open*, keyed by their
labels in that row. The next band's first row says which of its regions continue which open
ones (the same class in vertically adjacent pixels); regions joined that way are merged
(union-find: a U-shape's two arms become one region when its bottom arrives). A region that
does not reach the new band's last row can no longer grow and is handed out, its pieces
unioned once. So memory holds one band's labels plus the pieces of the regions still open:
the geometry of those regions, which the output holds anyway, never the scene.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import shapely
import shapely.errors
from affine import Affine
from rasterio.features import shapes
from scipy import ndimage

FOUR = ndimage.generate_binary_structure(2, 1)  # edge neighbours only


@dataclass(eq=False)
class Region:
    """A connected region of one class: its pieces (polygons in pixel coordinates, one per band it
    crosses), pixel count and the sum of its pixels' confidence codes (0..254)."""

    cls: int
    pieces: list[shapely.Polygon] = field(default_factory=list)
    pixels: int = 0
    confidence: float = 0.0
    into: Region | None = None  # set when merged into another region

    def root(self) -> Region:
        r = self
        while r.into is not None:
            r = r.into
        return r

    def absorb(self, other: Region) -> None:
        self.pieces += other.pieces
        self.pixels += other.pixels
        self.confidence += other.confidence
        other.pieces, other.into = [], self

    def polygon(self, seams: Sequence[int] = ()) -> shapely.Geometry:
        """The region's outline (pixel coordinates: x = column, y = row, pixel corners).

        The pieces meet only along the seams (the first rows of the bands after the first):
        with ``seams`` given, they are noded there (every vertex one piece has on a seam line
        added to the others' edges on it) and joined by GEOS's coverage union, which only drops
        the shared edges (measured: 1.75 x faster than the general union on a region of 5.6 M
        vertices, bench/RESULTS.md); without, or should the coverage union refuse, by the
        general union. Either keeps a vertex where a straight edge crossed a seam; simplifying
        with tolerance 0 drops exactly those (collinear) points, so the outline does not
        depend on where the bands were cut.
        """
        if len(self.pieces) == 1:
            return self.pieces[0]
        if seams:
            try:
                return shapely.simplify(shapely.coverage_union_all(node_on_seams(self.pieces, seams)), 0.0)
            except shapely.errors.GEOSException:
                pass
        return shapely.simplify(shapely.unary_union(self.pieces), 0.0)


def _polygon(geojson: dict) -> shapely.Polygon:
    """GDAL's GeoJSON-like polygon as a shapely one, rings built from arrays (shapely's ``shape``
    checks every coordinate in Python: half of the polygonising time on large regions)."""
    rings = [np.asarray(r, dtype=np.float64) for r in geojson["coordinates"]]
    holes = [shapely.linearrings(r) for r in rings[1:]] or None
    return shapely.polygons(shapely.linearrings(rings[0]), holes)


def node_on_seams(pieces: Sequence[shapely.Polygon], seams: Sequence[int]) -> list[shapely.Polygon]:
    """The pieces with, on each exterior edge along a seam line, every vertex any piece has on that line.

    Only exteriors reach a band's first or last row (a hole inside a piece is enclosed within
    its band), and the seam edges are horizontal: the added vertices are the breakpoints
    strictly between each such edge's ends, in the edge's direction.
    """
    seam_rows = np.asarray(sorted(set(seams)), dtype=float)
    rings = [shapely.get_coordinates(p.exterior) for p in pieces]
    breaks: dict[float, np.ndarray] = {}
    for xy in rings:
        on = np.isin(xy[:, 1], seam_rows)
        for y in np.unique(xy[on, 1]).tolist():
            breaks[y] = np.union1d(breaks.get(y, np.empty(0)), xy[xy[:, 1] == y, 0])
    out = []
    for p, xy in zip(pieces, rings):
        along = np.flatnonzero((xy[:-1, 1] == xy[1:, 1]) & np.isin(xy[:-1, 1], seam_rows))
        parts, start = [], 0
        for i in along.tolist():
            a, b, y = xy[i, 0], xy[i + 1, 0], xy[i, 1]
            bx = breaks[float(y)]
            mid = bx[(bx > min(a, b)) & (bx < max(a, b))]
            if mid.size:
                parts += [xy[start:i + 1], np.column_stack([mid if a < b else mid[::-1], np.full(mid.size, y)])]
                start = i + 1
        if not parts:
            out.append(p)
            continue
        parts.append(xy[start:])
        out.append(shapely.Polygon(np.concatenate(parts), [np.asarray(r.coords) for r in p.interiors]))
    return out


class RegionTracker:
    """Feeds bands of a class map in row order; returns the regions that are complete.

    Args:
        classes: class ids to polygonise (others, and nodata, are left out).
    """

    def __init__(self, classes: Sequence[int]) -> None:
        self.classes = tuple(int(c) for c in classes)
        self._open: dict[int, Region] = {}  # label in the last row seen -> its region
        self._last: np.ndarray | None = None  # labels of the last row seen
        self._last_cls: np.ndarray | None = None
        self._next_row = 0
        self.seams: list[int] = []  # first row of every band after the first

    def add(self, row0: int, labels: np.ndarray, confidence: np.ndarray | None) -> list[Region]:
        """Rows ``[row0, row0 + h)`` (the next ones) of the class map and their confidence codes."""
        if row0 != self._next_row:
            raise ValueError(f"rows must arrive in order: got {row0}, expected {self._next_row}")
        self._next_row = row0 + labels.shape[0]
        if row0:
            self.seams.append(row0)
        ids, cls_of = self._label(labels)
        n = len(cls_of) - 1
        flat = ids.ravel()
        pixels = np.bincount(flat, minlength=n + 1)
        conf = (np.bincount(flat, weights=confidence.ravel(), minlength=n + 1) if confidence is not None
                else np.zeros(n + 1))
        attached = self._continue(ids[0], cls_of)
        done: list[Region] = []
        new_open: dict[int, Region] = {}
        last = set(np.unique(ids[-1]).tolist()) - {0}
        for geom, value in shapes(ids, mask=ids > 0, connectivity=4, transform=Affine.translation(0, row0)):
            q = int(value)
            piece = Region(int(cls_of[q]), [_polygon(geom)], int(pixels[q]), float(conf[q]))
            region = attached[q].root() if q in attached else piece
            if region is not piece:
                region.absorb(piece)
            if q in last:
                new_open[q] = region
            elif q not in attached:
                done.append(region)
        still = {id(r.root()) for r in new_open.values()}
        seen: set[int] = set()
        for r in [*self._open.values(), *attached.values()]:
            r = r.root()
            if id(r) not in still and id(r) not in seen:
                seen.add(id(r))
                done.append(r)
        self._open = {q: r.root() for q, r in new_open.items()}
        self._last, self._last_cls = ids[-1].copy(), cls_of[ids[-1]]
        return done

    def finish(self) -> list[Region]:
        """The regions still open after the last band."""
        out, seen = [], set()
        for r in self._open.values():
            r = r.root()
            if id(r) not in seen:
                seen.add(id(r))
                out.append(r)
        self._open = {}
        return out

    def _label(self, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(h, W) int32 region labels (0: not polygonised) and each label's class."""
        ids = np.zeros(labels.shape, np.int32)
        cls_of, offset = [0], 0
        for c in self.classes:
            mask = labels == c
            if not mask.any():
                continue
            lab, k = ndimage.label(mask, structure=FOUR, output=np.int32)
            lab[mask] += offset
            ids += lab
            cls_of += [c] * k
            offset += k
        return ids, np.asarray(cls_of, dtype=np.int64)

    def _continue(self, first: np.ndarray, cls_of: np.ndarray) -> dict[int, Region]:
        """New label -> the open region it continues (merging open regions that it joins)."""
        if self._last is None or not self._open:
            return {}
        touch = (self._last > 0) & (first > 0) & (self._last_cls == cls_of[first])
        if not touch.any():
            return {}
        pairs = np.unique(np.stack([self._last[touch], first[touch]]), axis=1)
        attached: dict[int, Region] = {}
        for p, q in pairs.T.tolist():
            rp = self._open[p].root()
            rq = attached.get(q)
            if rq is None:
                attached[q] = rp
            elif rq.root() is not rp:
                rp.absorb(rq.root())
        return attached
