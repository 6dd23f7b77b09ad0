"""``--co KEY=VALUE``: GDAL creation options of the output COGs, checked before a run starts.

rio's convention: a repeated flag, each ``KEY=VALUE`` (a job file may give a mapping). The
options go to GDAL's COG driver after segpipe's own, so they win, and are checked here
against the driver's own list (names, choices, integers): GDAL itself only warns about an
unknown option and goes on, which at night means a run that silently ignored it.

A few are refused because they would break what segpipe guarantees: the options that
reproject or regrid the output (it stays on the input's pixel grid), ``OVERVIEWS`` (a class
map's mode overviews are built while it streams), ``NBITS`` (class ids and nodata need the
whole byte) and the lossy codecs (``JPEG``, ``WEBP``: class ids must stay exact).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from ... import gdal_lib

REFUSED = {
    **dict.fromkeys(("TILING_SCHEME", "TARGET_SRS", "RES", "EXTENT", "ALIGNED_LEVELS", "ZOOM_LEVEL",
                     "ZOOM_LEVEL_STRATEGY", "WARP_RESAMPLING", "ADD_ALPHA"),
                    "segpipe writes every output on the input's own pixel grid"),
    "OVERVIEWS": "segpipe builds the overviews itself (a class map's by mode, while it streams)",
    "NBITS": "class ids and the nodata value need whole bytes",
}
LOSSY = ("JPEG", "WEBP")


def parse(value: Any) -> dict[str, str]:
    """``["KEY=VALUE", ...]``, ``"KEY=VALUE KEY2=VALUE2"`` or a mapping -> {KEY: VALUE}, keys upper-case."""
    if value is None:
        return {}
    if isinstance(value, Mapping):
        items: Iterable[tuple[Any, Any]] = value.items()
    else:
        parts = value.replace(",", " ").split() if isinstance(value, str) else list(value)
        items = []
        for part in parts:
            key, sep, val = str(part).partition("=")
            if not sep or not key.strip():
                raise ValueError(f"expected KEY=VALUE, got {part!r}")
            items.append((key, val))
    return {str(k).strip().upper(): str(v).strip() for k, v in items}


def check(options: dict[str, str]) -> dict[str, str]:
    """The options, or ValueError naming the first bad one and what the COG driver accepts."""
    known = gdal_lib.creation_options("COG") if options else None
    for key, value in options.items():
        if key in REFUSED:
            raise ValueError(f"{key} cannot be set: {REFUSED[key]}")
        if key in ("COMPRESS", "OVERVIEW_COMPRESS") and value.upper() in LOSSY:
            raise ValueError(f"{key}={value} is lossy; class ids and scores must stay exact (use DEFLATE, ZSTD, "
                             "LZW or LERC)")
        if known is None:
            continue  # GDAL's list unreachable: GDAL warns about a bad option itself
        if key not in known:
            raise ValueError(f"{key} is not a creation option of GDAL's COG driver; it takes "
                             f"{', '.join(k for k in known if k not in REFUSED)}")
        _check_value(key, value, known[key])
    return options


def _check_value(key: str, value: str, option: Any) -> None:
    kind = option.get("type", "string")
    choices = [v.text or "" for v in option.iter("Value")]
    if kind == "string-select" and choices and value.upper() not in (c.upper() for c in choices):
        raise ValueError(f"{key}={value}: expected one of {', '.join(choices)}")
    if kind == "int" and not value.lstrip("-").isdigit():
        raise ValueError(f"{key}={value}: expected an integer")
    if key == "BLOCKSIZE" and (int(value) < 16 or int(value) % 16):
        raise ValueError(f"{key}={value}: expected a multiple of 16")
    if kind == "float":
        try:
            float(value)
        except ValueError:
            raise ValueError(f"{key}={value}: expected a number") from None
    if kind == "boolean" and value.upper() not in ("YES", "NO", "TRUE", "FALSE", "ON", "OFF", "1", "0"):
        raise ValueError(f"{key}={value}: expected YES or NO")
