"""``python -m data.synthetic``: write one synthetic scene or volume."""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path

import nibabel as nib

from .scenes import SCENE_DTYPES, write_scene
from .volumes import VOLUME_DTYPES, write_volume

def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m data.synthetic", description="Write a synthetic scene or volume with ground truth.")
    sub = p.add_subparsers(dest="kind", required=True)
    s = sub.add_parser("scene", help="write a synthetic GeoTIFF scene")
    s.add_argument("out", type=Path)
    s.add_argument("--size", type=int, default=2048, help="height in px (and width unless --width)")
    s.add_argument("--width", type=int)
    s.add_argument("--bands", type=int, default=4)
    s.add_argument("--dtype", choices=SCENE_DTYPES, default="uint16")
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--block", type=int, default=512)
    s.add_argument("--mask", type=Path, help="also write the ground-truth mask here")
    v = sub.add_parser("volume", help="write a synthetic CT-like NIfTI volume")
    v.add_argument("out", type=Path)
    v.add_argument("--shape", type=int, nargs=3, default=(128, 128, 64), help="along R-L, A-P, S-I")
    v.add_argument("--spacing", type=float, nargs=3, default=(0.8, 0.8, 2.5))
    v.add_argument("--orientation", default="RAS")
    v.add_argument("--dtype", choices=VOLUME_DTYPES, default="int16")
    v.add_argument("--seed", type=int, default=0)
    v.add_argument("--labels", type=Path, help="also write the label volume here")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.kind == "scene":
        info = write_scene(args.out, args.size, args.width or args.size, bands=args.bands, dtype=args.dtype,
                           seed=args.seed, block=args.block, mask_path=args.mask)
        extra = f", mask {info.mask_path}" if info.mask_path else ""
        print(f"wrote scene {info.path} ({info.height} x {info.width} x {info.bands} {info.dtype}, "
              f"{info.crs.to_string()}){extra}")
    else:
        info = write_volume(args.out, tuple(args.shape), spacing=tuple(args.spacing), orientation=args.orientation,
                            dtype=args.dtype, seed=args.seed, label_path=args.labels)
        extra = f", labels {info.label_path}" if info.label_path else ""
        print(f"wrote volume {info.path} (shape {info.shape}, {''.join(nib.aff2axcodes(info.affine))}, "
              f"zooms {info.spacing}){extra}")
    return 0
