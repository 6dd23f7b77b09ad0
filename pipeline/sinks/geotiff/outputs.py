"""A scene's outputs: the class map, and confidence / per-class probabilities on request, as COGs.

    NAME_mask.tif           class ids, uint8 (uint16 past 255 classes), nodata 255 (65535),
                            colour table and class names, mode overviews
    NAME_confidence.tif     max class probability x 254 (band scale 1/254), 255 = nodata
    NAME_probabilities.tif  one band per class, same encoding

Every file carries the provenance tags of :func:`provenance`.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from ...engine.bands import PROB_NODATA, PROB_SCALE
from ...options import RunOptions
from ...readers.geotiff import RasterInfo
from ...spec import ModelSpec
from ..base import FieldSink, Sink
from .cog import GeoTiffSink, Grid, OutputSpec


def label_encoding(num_classes: int) -> tuple[str, int, torch.dtype]:
    """(file dtype, nodata, stitcher label dtype) of a class map of ``num_classes`` classes."""
    return ("uint8", 255, torch.uint8) if num_classes <= 255 else ("uint16", 65535, torch.int32)


def provenance(info: RasterInfo, model: Any, options: RunOptions) -> dict[str, str]:
    """GeoTIFF tags saying how a scene's outputs were made."""
    from ... import __version__

    return {
        "SEGPIPE_VERSION": __version__, "SEGPIPE_INPUT": str(info.path.resolve()),
        "SEGPIPE_MODEL": str(model.path), "SEGPIPE_MODEL_SHA256": model.sha256,
        "SEGPIPE_TILE": str(options.tile), "SEGPIPE_OVERLAP": str(options.overlap),
        "SEGPIPE_BLEND": options.blend, "SEGPIPE_TTA": str(options.tta),
    }


def scene_sinks(info: RasterInfo, spec: ModelSpec, options: RunOptions, folder: Path,
                tags: dict[str, str]) -> list[Callable[[], Sink]]:
    """The makers of a scene's sinks (for a :class:`~pipeline.sinks.base.SinkSet`)."""
    grid = Grid(info.width, info.height, info.crs, info.transform)
    k = spec.num_classes
    dtype, nodata, _ = label_encoding(k)
    stem = folder.name
    colormap = {i: (*c, 255) for i, c in enumerate(spec.colors())} if dtype == "uint8" else None
    outs = [("mask", "labels", OutputSpec(
        folder / f"{stem}_mask.tif", 1, dtype, nodata, "mode", colormap, ("class",),
        {**tags, "CLASS_NAMES": ",".join(spec.class_names)}, classes=k))]
    if options.confidence:
        outs.append(("confidence", "confidence", OutputSpec(
            folder / f"{stem}_confidence.tif", 1, "uint8", PROB_NODATA, "average", None,
            ("max class probability x 254",), tags, 1.0 / PROB_SCALE)))
    if options.probabilities:
        outs.append(("probabilities", "probabilities", OutputSpec(
            folder / f"{stem}_probabilities.tif", k, "uint8", PROB_NODATA, "average", None,
            tuple(f"p({n}) x 254" for n in spec.class_names), tags, 1.0 / PROB_SCALE)))

    def maker(name: str, band_field: Any, out: OutputSpec) -> Callable[[], Sink]:
        return lambda: FieldSink(name, band_field, GeoTiffSink(out, grid, options.compress))

    return [maker(*o) for o in outs]

