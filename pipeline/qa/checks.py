"""Checks run on the finished output files (I/O: they open files, they compute nothing much).

Each check is a function in ``CHECKS`` (name -> check) returning one
:class:`~pipeline.qa.schema.CheckResult`. ``pass``: verified; ``fail``: the output is
wrong; ``skip``: not applicable (with the reason). A check never raises for a bad
output: it reports it.

Volumes: the volume path passes its own checks (e.g. the NIfTI header round trip) as
callables through ``extra`` in :func:`run_checks`; this module stays format-generic.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from pathlib import Path

import numpy as np
import rasterio
from rasterio.errors import RasterioError

from ..sinks.geotiff.cog import cog_problems
from .schema import CheckResult

log = logging.getLogger(__name__)

Check = Callable[["CheckContext"], CheckResult]
# An extra check from another input path: returns a CheckResult, or a list of problems (empty = pass).
ExtraCheck = Callable[[], "CheckResult | list[str]"]


class CheckContext:
    """What the checks need: the input file and the outputs by name (paths)."""

    def __init__(self, input_path: Path, scene_dir: Path, outputs: Mapping[str, Path]) -> None:
        self.input_path = input_path
        self.scene_dir = scene_dir
        self.outputs = {k: Path(v) for k, v in outputs.items()}

    def rasters(self) -> dict[str, Path]:
        """GeoTIFF outputs that exist (a missing one is the ``complete`` check's finding)."""
        return {k: p for k, p in self.outputs.items() if p.suffix.lower() in (".tif", ".tiff") and p.is_file()}


def check_complete(ctx: CheckContext) -> CheckResult:
    """Every output named in the record exists, is non-empty, and no ``.partial`` is left over."""
    missing = [f"{k}: {p.name}" for k, p in ctx.outputs.items() if not p.is_file() or p.stat().st_size == 0]
    partial = sorted(p.name for p in ctx.scene_dir.glob(".*.partial*"))
    if not ctx.outputs:
        return CheckResult(name="complete", status="fail", detail="the record names no output")
    if missing or partial:
        detail = "; ".join(filter(None, [f"missing or empty: {', '.join(missing)}" if missing else "",
                                         f"leftover temporary files: {', '.join(partial)}" if partial else ""]))
        return CheckResult(name="complete", status="fail", detail=detail)
    return CheckResult(name="complete", status="pass", detail=f"{len(ctx.outputs)} output(s) present")


def check_geometry(ctx: CheckContext) -> CheckResult:
    """Every raster output has the input's size, CRS and transform, exactly."""
    rasters = ctx.rasters()
    if not rasters:
        return CheckResult(name="geometry", status="skip", detail="no raster outputs")
    try:
        with rasterio.open(ctx.input_path) as src:
            ref = (src.width, src.height, src.crs, src.transform)
        problems = []
        for name, p in rasters.items():
            with rasterio.open(p) as ds:
                got = (ds.width, ds.height, ds.crs, ds.transform)
            problems += [f"{name}: {what} {g} != input {r}" for what, g, r in
                         zip(("size w", "size h", "CRS", "transform"), got, ref) if g != r]
    except (RasterioError, OSError) as exc:
        return CheckResult(name="geometry", status="fail", detail=f"cannot open: {exc}")
    if problems:
        return CheckResult(name="geometry", status="fail", detail="; ".join(problems))
    return CheckResult(name="geometry", status="pass", detail="size, CRS and transform identical to the input")


def check_cog(ctx: CheckContext) -> CheckResult:
    """Every GeoTIFF output is a valid Cloud-Optimized GeoTIFF (rio-cogeo's validator)."""
    rasters = ctx.rasters()
    if not rasters:
        return CheckResult(name="cog", status="skip", detail="no GeoTIFF outputs")
    problems = []
    for name, p in rasters.items():
        try:
            problems += [f"{name}: {e}" for e in cog_problems(p)]
        except Exception as exc:  # noqa: BLE001 - the validator's own failure is a finding, not a crash
            problems.append(f"{name}: validator failed: {exc}")
    if problems:
        return CheckResult(name="cog", status="fail", detail="; ".join(problems))
    return CheckResult(name="cog", status="pass", detail=f"{len(rasters)} valid COG(s)")


def check_no_nan(ctx: CheckContext) -> CheckResult:
    """No NaN/Inf in float outputs (read block by block; integer outputs cannot hold NaN)."""
    floats = {}
    for name, p in ctx.rasters().items():
        with rasterio.open(p) as ds:
            if np.dtype(ds.dtypes[0]).kind == "f":
                floats[name] = p
    if not floats:
        return CheckResult(name="no_nan", status="pass", detail="integer outputs only: NaN impossible")
    bad = {}
    for name, p in floats.items():
        with rasterio.open(p) as ds:
            n = sum(int((~np.isfinite(ds.read(window=w))).sum()) for _, w in ds.block_windows(1))
        if n:
            bad[name] = n
    if bad:
        return CheckResult(name="no_nan", status="fail",
                           detail="; ".join(f"{k}: {v} non-finite value(s)" for k, v in bad.items()))
    return CheckResult(name="no_nan", status="pass", detail=f"{len(floats)} float output(s) finite")


CHECKS: dict[str, Check] = {
    "complete": check_complete,
    "geometry": check_geometry,
    "cog": check_cog,
    "no_nan": check_no_nan,
}


def run_checks(ctx: CheckContext, names: tuple[str, ...] | None = None,
               extra: Mapping[str, ExtraCheck] | None = None) -> list[CheckResult]:
    """Run the named checks (default: all of ``CHECKS``) and the ``extra`` ones, in order."""
    results = []
    for name in names if names is not None else tuple(CHECKS):
        results.append(_guard(name, lambda f=CHECKS[name]: f(ctx)))
    for name, fn in (extra or {}).items():
        results.append(_guard(name, fn))
    return results


def _guard(name: str, fn: Callable[[], CheckResult | list[str]]) -> CheckResult:
    try:
        out = fn()
    except Exception as exc:  # noqa: BLE001 - a crashing check is a failed check, named in the report
        log.warning("check %s raised %s: %s", name, type(exc).__name__, exc)
        return CheckResult(name=name, status="fail", detail=f"check raised {type(exc).__name__}: {exc}")
    if isinstance(out, CheckResult):
        return out
    problems = list(out)
    return CheckResult(name=name, status="fail" if problems else "pass", detail="; ".join(problems) or "ok")
