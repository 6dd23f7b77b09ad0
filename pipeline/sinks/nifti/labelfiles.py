"""Text of the label-name files written next to a label volume (pure: strings in, strings out).

Formats:
    ``.labels.json``: segpipe's own record, ``{"kind", "labels": [{"value", "name", "color"}], ...}``.
    ``.ctbl``: 3D Slicer colour table, one ``index name R G B A`` line per label (0-255
        components, whitespace separated, so spaces in names become underscores; lines
        starting with ``#`` are comments). Slicer loads it as a colour node (Add Data);
        select it as the label map's lookup table.
    ``.itksnap.txt``: ITK-SNAP label description file, one
        ``IDX R G B A VIS MSH "LABEL"`` line per label (A is opacity 0..1); loaded with
        Segmentation > Import Label Descriptions.
Label 0 (background) is transparent and hidden in both viewers' files.
"""

from __future__ import annotations

import json
from collections.abc import Sequence

from ...engine.bands import PROB_NODATA, PROB_SCALE
from ...spec import default_colors

_ITKSNAP_HEADER = """\
################################################
# ITK-SnAP Label Description File
# File format:
# IDX   -R-  -G-  -B-  -A--  VIS MSH  LABEL
# Fields:
#    IDX:   Zero-based index
#    -R-:   Red color component (0..255)
#    -G-:   Green color component (0..255)
#    -B-:   Blue color component (0..255)
#    -A-:   Label transparency (0.00 .. 1.00)
#    VIS:   Label visibility (0 or 1)
#    MSH:   Label mesh visibility (0 or 1)
#  LABEL:   Label description
################################################
"""


def _colors(names: Sequence[str], colors: Sequence[tuple[int, int, int]] | None) -> list[tuple[int, int, int]]:
    colors = list(colors) if colors else list(default_colors(len(names)))
    if len(colors) < len(names):
        colors += list(default_colors(len(names)))[len(colors):]
    return [tuple(int(c) for c in rgb) for rgb in colors[: len(names)]]  # type: ignore[misc]


def sidecar_json(kind: str, names: Sequence[str], colors: Sequence[tuple[int, int, int]] | None,
                 source: str, series_note: str, volume_file: str) -> str:
    """segpipe's JSON sidecar: label names and colours, or the confidence encoding."""
    doc: dict = {"format": "segpipe.labels/1", "kind": kind, "volume": volume_file, "source": source,
                 "series_note": series_note}
    if kind == "labels":
        doc["labels"] = [{"value": i, "name": n, "color": list(c)}
                         for i, (n, c) in enumerate(zip(names, _colors(names, colors)))]
    else:
        doc["encoding"] = {"scale": PROB_SCALE, "nodata": PROB_NODATA,
                           "meaning": f"value / {PROB_SCALE}; {PROB_NODATA} = no data"}
    return json.dumps(doc, indent=2) + "\n"


def slicer_ctbl(names: Sequence[str], colors: Sequence[tuple[int, int, int]] | None) -> str:
    """3D Slicer colour table text."""
    lines = ["# Color table file written by segpipe", f"# {len(names)} values"]
    for i, (name, (r, g, b)) in enumerate(zip(names, _colors(names, colors))):
        alpha = 0 if i == 0 else 255
        lines.append(f"{i} {'_'.join(name.split()) or f'label_{i}'} {r} {g} {b} {alpha}")
    return "\n".join(lines) + "\n"


def itksnap_labels(names: Sequence[str], colors: Sequence[tuple[int, int, int]] | None) -> str:
    """ITK-SNAP label description text."""
    rows = []
    for i, (name, (r, g, b)) in enumerate(zip(names, _colors(names, colors))):
        shown = 0 if i == 0 else 1
        label = name.replace('"', "'")
        rows.append(f"{i:5d} {r:5d} {g:4d} {b:4d} {float(shown):8.2f} {shown:2d} {shown:2d}    \"{label}\"")
    return _ITKSNAP_HEADER + "\n".join(rows) + "\n"
