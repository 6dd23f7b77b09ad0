"""``segpipe run``: segment one scene or volume on this machine, with a progress bar."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from pipeline.options import RunOptions

from .cli_options import add_model_flags, given


def add_run_options(p: argparse.ArgumentParser, required: bool = True) -> None:
    """Options shared by ``run`` and ``batch`` (and job config files): model, output root, run options.

    ``required``: ``--model`` and ``--out`` must be given (``batch`` may take them from a job file).
    """
    p.add_argument("--model", required=required, type=Path, help="checkpoint (.safetensors) made by segpipe")
    p.add_argument("--out", required=required, type=Path, help="output root; each input gets OUT/<name>/")
    add_model_flags(p, RunOptions.model_fields)


def options_from_args(args: argparse.Namespace) -> RunOptions:
    return RunOptions(**given(args, RunOptions.model_fields))


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("run", help="segment one scene (GeoTIFF) or volume (NIfTI)",
                       description="Segment one GeoTIFF scene or NIfTI volume into OUT/<name>/.")
    p.add_argument("input", type=Path, help="GeoTIFF / GDAL raster, or .nii / .nii.gz volume")
    add_run_options(p)
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    from models.checkpoint import load_checkpoint
    from pipeline.run import segment_file

    options = options_from_args(args)
    model = load_checkpoint(args.model)
    bar = _Bar(disable=args.quiet)
    try:
        result = segment_file(args.input, model, args.out, options, progress=bar.update)
    finally:
        bar.close()
    print(summary_line(result.record, result.scene_dir))
    return 0


def summary_line(record: dict[str, Any], scene_dir: Path) -> str:
    t = record["timings"]
    inp = record["input"]
    size = "x".join(str(inp[k]) for k in ("width", "height", "depth") if k in inp)
    warn = f", {len(record['warnings'])} warning(s)" if record["warnings"] else ""
    return (f"{Path(inp['path']).name}: {size} -> {scene_dir}/ in {t['total_s']:.1f} s "
            f"({t['mpix_per_s']:.2f} Mpix/s){warn}")


class _Bar:
    """tqdm bar over tiles, with Mpix/s of finished rows."""

    def __init__(self, disable: bool) -> None:
        self.disable = disable or not sys.stderr.isatty()
        self.bar = None

    def update(self, p: Any) -> None:
        if self.disable:
            return
        if self.bar is None:
            from tqdm import tqdm

            self.bar = tqdm(total=p.tiles_total, unit="tile", dynamic_ncols=True, leave=False)
        self.bar.total = p.tiles_total
        self.bar.n = p.tiles_done
        self.bar.set_postfix_str(f"{p.mpix_per_s:.2f} Mpix/s", refresh=True)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
