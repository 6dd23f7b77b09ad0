"""Outputs before and after an engine change: identical at fp32 on the CPU, or a list of differences.

    python bench/compare_masks.py --snapshot before.json     # with the old code
    python bench/compare_masks.py --check before.json        # with the new code: exit 1 if a mask differs

Runs ``segpipe run --device cpu --precision fp32`` (the command-line interface, which an
engine change must keep) over a fixed set of inputs and models, and records a sha256 of the
decoded pixels of every output (masks, label volumes, confidence, probabilities): the demo's
scenes and CT volume with the demo's trained models (``make demo`` trains them; this script
does too if they are missing), synthetic benchmark scenes with seeded random-weight U-Nets
(nodata, a scene smaller than a tile, 1 and 4 bands, TTA), and nibabel's bundled volumes
(anatomical.nii, example_nifti2.nii.gz, example4d.nii.gz as a series) with 2D and 2.5D
models, whole-plane and tiled. Inputs and models are written once under ``--workdir``.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def _random_model(path: Path, bands: int, context: int, classes: int, seed: int, tile: int, overlap: int,
                  norm: dict) -> Path:
    if path.exists():
        return path
    import torch

    from models.checkpoint import save_checkpoint
    from models.unet import build_model
    from pipeline.spec import ModelSpec, Normalization

    torch.manual_seed(seed)
    kw = {"encoder_depth": 4, "decoder_channels": (64, 32, 16, 16)}
    net = build_model("Unet", "resnet18", bands * context, classes, **kw).eval()
    names = tuple(["background", "water", "vegetation", "built", "other"][:classes])
    spec = ModelSpec(bands * context, tuple(range(1, bands + 1)), names, context=context, tile=tile, overlap=overlap,
                     normalization=Normalization(**norm))
    return save_checkpoint(net, spec, path, arch="Unet", encoder="resnet18", arch_kwargs=kw)


def _cases(work: Path) -> list[tuple[str, Path, Path, list[str]]]:
    """(name, input, model, extra flags)."""
    from data import demo
    from data.synthetic import write_scene

    demo.generate(demo.ROOT, volumes=True)
    scene_model = demo.train_demo_model("scene", demo.ROOT)
    volume_model = demo.train_demo_model("volume", demo.ROOT)
    cases = [(f"demo-{p.stem}", p, scene_model, ["--confidence"]) for p in sorted((demo.ROOT / "demo").glob("*.tif"))]
    cases += [(f"demo-{p.name}", p, volume_model, ["--confidence", "--probabilities"])
              for p in sorted((demo.ROOT / "demo").glob("*.nii.gz"))]
    inputs = work / "inputs"
    inputs.mkdir(parents=True, exist_ok=True)
    scenes = {"syn4": dict(height=700, width=900, bands=4, seed=7), "syn1": dict(height=300, width=260, bands=1, seed=8),
              "small": dict(height=90, width=70, bands=4, seed=9)}
    for name, kw in scenes.items():
        if not (inputs / f"{name}.tif").exists():
            write_scene(inputs / f"{name}.tif", **kw)
    scale = {"kind": "scale", "factor": 1e-4}
    m4 = _random_model(work / "m4.safetensors", 4, 1, 4, 0, 256, 64, scale)
    m1 = _random_model(work / "m1.safetensors", 1, 1, 3, 1, 128, 32, {"kind": "percentile"})
    cases += [("syn4", inputs / "syn4.tif", m4, ["--confidence", "--probabilities"]),
              ("syn4-hann-tta", inputs / "syn4.tif", m4, ["--blend", "hann", "--tta", "--tile", "160", "--overlap", "32"]),
              ("syn1-percentile", inputs / "syn1.tif", m1, ["--confidence"]),
              ("small", inputs / "small.tif", m4, ["--confidence"])]
    import nibabel.testing

    nib_data = Path(nibabel.testing.data_path)
    ct = {"kind": "zscore"}
    v3 = _random_model(work / "v3.safetensors", 1, 3, 3, 2, 256, 32, ct)
    v1 = _random_model(work / "v1.safetensors", 1, 1, 2, 3, 64, 16, {"kind": "percentile"})
    cases += [("anatomical-ctx3", nib_data / "anatomical.nii", v3, ["--confidence", "--probabilities"]),
              ("anatomical-tiled", nib_data / "anatomical.nii", v1, ["--confidence"]),
              ("nifti2-ctx3", nib_data / "example_nifti2.nii.gz", v3, ["--volume", "0"]),
              ("example4d-each", nib_data / "example4d.nii.gz", v3, ["--series", "each", "--confidence"]),
              ("example4d-tiled-vol1", nib_data / "example4d.nii.gz", v1, ["--volume", "1"])]
    return cases


def _pixels(path: Path):
    import numpy as np

    if path.name.endswith((".nii", ".nii.gz")):
        import nibabel as nib

        return np.asarray(nib.load(str(path)).dataobj)
    import rasterio

    with rasterio.open(path) as ds:
        return ds.read()


def _digest(path: Path) -> str:
    """sha256 of an output's decoded pixels (file bytes carry versions and timings)."""
    a = _pixels(path)
    return hashlib.sha256(a.tobytes() + str(a.shape).encode() + str(a.dtype).encode()).hexdigest()


def _difference(before: Path, after: Path) -> str:
    """How two versions of an output differ: pixels that differ and by how much."""
    import numpy as np

    a, b = _pixels(before), _pixels(after)
    if a.shape != b.shape:
        return f"shape {a.shape} -> {b.shape}"
    d = np.abs(a.astype(np.int64) - b.astype(np.int64))
    return f"{int((d > 0).sum())} of {d.size} pixels differ, by at most {int(d.max())}"


def _outputs(out: Path, name: str) -> dict[str, Path]:
    folder = next(p for p in sorted((out / name).iterdir()) if not p.name.startswith("."))  # not .segpipe/
    record = json.loads((folder / "record.json").read_text())
    return {key: folder / file for key, file in sorted(record["outputs"].items())}


def _run(name: str, src: Path, model: Path, flags: list[str], out: Path) -> dict[str, str]:
    cmd = [sys.executable, "-m", "flows.cli", "run", str(src), "--model", str(model), "--out", str(out / name),
           "--device", "cpu", "--precision", "fp32", "--quiet", *flags]
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT)
    if proc.returncode not in (0, 4):  # 4: complete, but a QA verdict is fail
        raise SystemExit(f"{name}: segpipe run failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    return {key: _digest(path) for key, path in _outputs(out, name).items()}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    group = ap.add_mutually_exclusive_group(required=True)
    group.add_argument("--snapshot", type=Path, help="write the digests here")
    group.add_argument("--check", type=Path, help="compare with these digests")
    ap.add_argument("--workdir", type=Path, default=ROOT / "data" / "generated" / "compare")
    args = ap.parse_args()
    out = args.workdir / ("out" if args.snapshot else "out-check")  # the snapshot's outputs are kept
    import shutil

    shutil.rmtree(out, ignore_errors=True)
    digests = {name: _run(name, src, model, flags, out) for name, src, model, flags in _cases(args.workdir)}
    if args.snapshot:
        args.snapshot.write_text(json.dumps(digests, indent=1, sort_keys=True))
        print(f"{sum(len(d) for d in digests.values())} outputs of {len(digests)} runs -> {args.snapshot}")
        return 0
    before = json.loads(args.check.read_text())
    diffs = [f"{case}/{key}" for case in sorted(set(before) | set(digests))
             for key in sorted(set(before.get(case, {})) | set(digests.get(case, {})))
             if before.get(case, {}).get(key) != digests.get(case, {}).get(key)]
    n = sum(len(d) for d in digests.values())
    print(f"{n} outputs of {len(digests)} runs: " + ("all identical" if not diffs else f"{len(diffs)} differ"))
    for d in diffs:
        case, key = d.split("/", 1)
        try:
            print(f"  {d}: {_difference(_outputs(args.workdir / 'out', case)[key], _outputs(out, case)[key])}")
        except (KeyError, StopIteration, OSError) as exc:
            print(f"  {d}: {type(exc).__name__} {exc}")
    masks = [d for d in diffs if d.endswith(("/mask", "labels"))]
    return 1 if masks else 0


if __name__ == "__main__":
    sys.exit(main())
