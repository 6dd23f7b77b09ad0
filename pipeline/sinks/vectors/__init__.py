"""Vector output: ``NAME_vectors.gpkg``, one polygon per connected region, streamed with the mask.

    regions.py  band-by-band polygonising with exact merges across the seams (compute only)
    gpkg.py     the GeoPackage layer, appended in batches, renamed into place when complete
    sink.py     the sink: regions -> features (class, area, mean confidence) in the mask's CRS

Every class but the background (class 0) is vectorised unless ``vector_classes`` names the
classes (by name or id).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ...errors import ConfigError
from .sink import VectorSink

__all__ = ["VectorSink", "vector_classes", "vector_sink"]


def vector_classes(chosen: tuple[str, ...] | None, class_names: tuple[str, ...]) -> list[int]:
    """Class ids to vectorise: ``chosen`` names or ids, or every class but 0."""
    if not chosen:
        return list(range(1, len(class_names)))
    ids = []
    for c in chosen:
        if c in class_names:
            ids.append(class_names.index(c))
        elif c.isdigit() and int(c) < len(class_names):
            ids.append(int(c))
        else:
            raise ConfigError(f"vector class {c!r} is not a class of the model; its classes are "
                              f"{', '.join(f'{i}={n}' for i, n in enumerate(class_names))}")
    return sorted(set(ids))


def vector_sink(info: Any, spec: Any, options: Any, path: Path) -> VectorSink:
    """The vector sink of a scene (``info``: its RasterInfo) for the run's options."""
    return VectorSink(path, info.crs, info.transform, spec.class_names,
                      vector_classes(options.vector_classes, tuple(spec.class_names)),
                      simplify=options.vector_simplify, min_area=options.vector_min_area)
