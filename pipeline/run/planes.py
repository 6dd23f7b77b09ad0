"""Whole planes of a volume for QA: a plane finished in several row bands, joined."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from ..engine.bands import Band


class PlaneJoiner:
    """Hands on whole planes: a plane finished in several row bands (a slice larger than a tile)
    is joined first; a plane finished in one band passes through as it is."""

    def __init__(self, height: int, handle: Callable[[Band], None]) -> None:
        self.height, self.handle = height, handle
        self._parts: list[Band] = []

    def __call__(self, band: Band) -> None:
        if band.row0 == 0 and band.height == self.height:
            self.handle(band)
            return
        self._parts.append(band)
        if band.row0 + band.height == self.height:
            parts, self._parts = self._parts, []
            self.handle(join(parts))


def join(bands: list[Band]) -> Band:
    """The row bands of one plane, top to bottom, as one band (tallies: ``seam_rows`` joined, the rest summed)."""

    def cat(name: str, axis: int) -> np.ndarray | None:
        parts = [getattr(b, name) for b in bands]
        return None if parts[0] is None else np.concatenate(parts, axis=axis)

    tallies = {k: np.concatenate([b.tallies[k] for b in bands], axis=-1) if k == "seam_rows"
               else sum(b.tallies[k] for b in bands) for k in bands[0].tallies}
    return Band(bands[0].plane, 0, cat("labels", 0), cat("valid", 0), cat("confidence", 0), cat("probabilities", 1),
                float(sum(b.entropy_sum for b in bands)), sum(b.valid_pixels for b in bands), tallies)
