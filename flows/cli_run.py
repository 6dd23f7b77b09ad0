"""``segpipe run``: segment one scene or volume on this machine, with a progress bar."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from pipeline.blend import BLEND_WINDOWS
from pipeline.raster.write import COMPRESSIONS
from pipeline.settings import RunSettings


def add_run_options(p: argparse.ArgumentParser) -> None:
    """Options shared by ``run`` and ``batch`` (and job config files)."""
    p.add_argument("--model", required=True, type=Path, help="checkpoint (.safetensors) made by segpipe")
    p.add_argument("--out", required=True, type=Path, help="output root; each input gets OUT/<name>/")
    p.add_argument("--tile", type=int, help="tile size in pixels, multiple of 32 (default: checkpoint's)")
    p.add_argument("--overlap", type=int, help="overlap in pixels, about the receptive field (default: checkpoint's)")
    p.add_argument("--blend", choices=sorted(BLEND_WINDOWS), default="gaussian", help="tile blending window")
    p.add_argument("--batch-size", type=int, help="tiles per model call (default: 8 on a GPU, 2 on the CPU)")
    p.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N")
    p.add_argument("--precision", choices=["auto", "fp32", "bf16", "fp16"], default="auto",
                   help="auto = bf16 autocast on a GPU and on CPUs with AMX-BF16/AVX512-BF16, else fp32")
    p.add_argument("--tta", action="store_true", help="flip test-time augmentation (4x the model work)")
    p.add_argument("--confidence", action="store_true", help="also write max class probability (uint8, /254)")
    p.add_argument("--probabilities", action="store_true", help="also write per-class probabilities (uint8, /254)")
    p.add_argument("--workers", type=int, default=4, help="reader threads")
    p.add_argument("--compress", choices=COMPRESSIONS, default="deflate")
    p.add_argument("--slice-axis", type=int, choices=[0, 1, 2], help="volumes: axis to slice (default: coarsest)")
    p.add_argument("--context", type=int, help="volumes: 2.5D slices per input (default: checkpoint's)")
    p.add_argument("--volume", type=int, help="volumes: which volume of a 4D series to segment")
    p.add_argument("--series", choices=["error", "each"], help="volumes: policy for a 4D series")


def settings_from_args(args: argparse.Namespace) -> RunSettings:
    series: Any = args.volume if args.volume is not None else (args.series or "error")
    return RunSettings(
        tile=args.tile, overlap=args.overlap, blend=args.blend, batch_size=args.batch_size, device=args.device,
        precision=args.precision, tta=args.tta, confidence=args.confidence, probabilities=args.probabilities,
        workers=args.workers, compress=args.compress, slice_axis=args.slice_axis, context=args.context,
        series=series,
    )


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("run", help="segment one scene (GeoTIFF) or volume (NIfTI)",
                       description="Segment one GeoTIFF scene or NIfTI volume into OUT/<name>/.")
    p.add_argument("input", type=Path, help="GeoTIFF / GDAL raster, or .nii / .nii.gz volume")
    add_run_options(p)
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    from models.checkpoint import load_checkpoint
    from pipeline.dispatch import segment_file

    settings = settings_from_args(args)
    model = load_checkpoint(args.model)
    bar = _Bar(disable=args.quiet)
    try:
        result = segment_file(args.input, model, args.out, settings, progress=bar.update)
    finally:
        bar.close()
    print(summary_line(result.record, result.scene_dir))
    return 0


def summary_line(record: dict[str, Any], scene_dir: Path) -> str:
    t = record["timings"]
    inp = record["input"]
    size = "x".join(str(inp[k]) for k in ("width", "height", "depth") if k in inp)
    warn = f", {len(record['warnings'])} warning(s)" if record["warnings"] else ""
    f = record.get("facts", {})
    used = ", ".join(str(f[k]) for k in ("precision", "precision_reason") if f.get(k))  # bf16, auto: CPU has ...
    return (f"{Path(inp['path']).name}: {size} -> {scene_dir}/ in {t['total_s']:.1f} s "
            f"({t['mpix_per_s']:.2f} Mpix/s{'; ' + used if used else ''}){warn}")


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
