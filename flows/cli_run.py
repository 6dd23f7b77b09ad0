"""``segpipe run``: segment one scene or volume on this machine, with a progress bar."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from pipeline.options import RunOptions

from .cli_options import add_model_flags, given

EXIT_QA_FAILED = 4  # every output complete, but the QA verdict is fail


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
    p.add_argument("input", help="GeoTIFF / GDAL raster or GDAL virtual path (/vsis3/..., /vsicurl/...), "
                                  "or .nii / .nii.gz volume")
    add_run_options(p)
    p.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    from models.checkpoint import load_checkpoint
    from pipeline.run import segment_file

    from .progress import Bar

    options = options_from_args(args)
    model = load_checkpoint(args.model)
    with Bar("tile", disable=args.quiet) as bar:
        result = segment_file(args.input, model, args.out, options, progress=lambda p: _progress(bar, p))
    print(summary_line(result.record, result.scene_dir))
    return EXIT_QA_FAILED if (result.record.get("qa") or {}).get("verdict") == "fail" else 0


def _progress(bar: Any, p: Any) -> None:
    """Tiles (slices for volumes) done; Mpix/s of finished rows once a row is finished."""
    bar.update(p.tiles_done, p.tiles_total, f"{p.mpix_per_s:.2f} Mpix/s" if p.rows_done else "")


def summary_line(record: dict[str, Any], scene_dir: Path) -> str:
    """The one line ``segpipe run`` ends with (see ``flows.summary.scene_line``)."""
    from .summary import scene_line

    return scene_line(record, scene_dir)
