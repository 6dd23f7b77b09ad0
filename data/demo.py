"""``make demo``: labelled synthetic data, a small real model (trained once), then the main job.

    python -m data.demo                 # everything; second runs reuse data and models
    python -m data.demo --retrain       # train the demo models again
    python -m data.demo --no-volumes    # scenes only

1. Writes labelled synthetic scenes (and volumes) under ``data/generated/`` if missing:
   ``scenes/{train,val,test}/{images,labels}/`` and ``demo/`` (fresh, unlabelled inputs).
2. Trains ``data/generated/demo-model.safetensors`` (resnet18 U-Net, depth 4, 100 steps
   of 8 x 128 px tiles; ~45 s on 2 idle CPU cores) the first time only, then scores it on fresh held-out scenes through the
   production engine and writes that into its model card next to it. Volumes get their
   own small model, ``demo-volume-model.safetensors`` (2.5D, CT window).
3. Runs the main job on the demo inputs: ``segpipe batch`` (Prefect batch flow) when it
   is there, else ``segpipe run`` per input, into ``demo-out/scenes/`` and ``demo-out/volumes/``.

Seeds never overlap between train, validation, test and demo data.
"""

from __future__ import annotations

import argparse
import importlib.util
import logging
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from models.train.config import AugmentConfig

from .synthetic import CLASS_NAMES, LABEL_NAMES, write_scene, write_volume

log = logging.getLogger("data.demo")

ROOT = Path(__file__).resolve().parent / "generated"
OUT = Path("demo-out")
SCENE_MODEL = "demo-model.safetensors"
VOLUME_MODEL = "demo-volume-model.safetensors"

# (split, seeds, size): training scenes, held-out validation (early stopping + card),
# fresh test scenes (scored once, after training), and the demo's own inputs.
SCENE_SETS = (("train", range(100, 108), 384), ("val", range(200, 202), 384), ("test", range(300, 302), 512))
DEMO_SCENES = ((1000, 1024), (1001, 768), (1002, 768))
VOLUME_SHAPE = (96, 96, 40)
VOLUME_SETS = (("train", range(100, 104)), ("val", range(200, 201)), ("test", range(300, 301)))
DEMO_VOLUMES = ((1000, "LPS"),)

# IoU >= 0.95 on every class of fresh held-out data, trained in fp32 or (precision auto on a CPU
# with native bf16) in bf16; times and scores in docs/training.md and bench/RESULTS.md.
SCENE_TRAINING = dict(encoder="resnet18", encoder_depth=4, tile=128, infer_tile=256, overlap=32, batch_size=8,
                      steps_per_epoch=50, epochs=2, lr=2e-3, warmup_steps=8, patience=2, seed=0)
# CT values are calibrated (HU): no brightness/contrast or noise augmentation, which at the
# default limits (0.1 of the window = 100 HU) would drown the 20 HU liver/soft-tissue contrast.
VOLUME_TRAINING = dict(encoder="resnet18", encoder_depth=3, tile=96, infer_tile=96, overlap=16, batch_size=8,
                       steps_per_epoch=50, epochs=3, lr=2e-3, warmup_steps=5, patience=2, seed=0, context=3,
                       class_balance=0.8, norm="ct_window", ct_window=(-150.0, 350.0),
                       augment=AugmentConfig(brightness_p=0.0, noise_p=0.0))


def generate(root: Path = ROOT, volumes: bool = True) -> None:
    """Write every missing labelled scene/volume and demo input (existing files are kept)."""
    for split, seeds, size in SCENE_SETS:
        for seed in seeds:
            image = root / "scenes" / split / "images" / f"scene_{seed}.tif"
            _scene(image, size, size, seed, image.parent.parent / "labels" / image.name)
    for seed, size in DEMO_SCENES:
        _scene(root / "demo" / f"demo_scene_{seed}.tif", size, size, seed, None)
    if not volumes:
        return
    for split, seeds in VOLUME_SETS:
        for seed in seeds:
            image = root / "volumes" / split / "images" / f"ct_{seed}.nii.gz"
            _volume(image, seed, "RAS", image.parent.parent / "labels" / image.name)
    for seed, orientation in DEMO_VOLUMES:
        _volume(root / "demo" / f"demo_ct_{seed}.nii.gz", seed, orientation, None)


def _scene(path: Path, h: int, w: int, seed: int, mask: Path | None) -> None:
    if path.exists() and (mask is None or mask.exists()):
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    if mask is not None:
        mask.parent.mkdir(parents=True, exist_ok=True)
    write_scene(path, h, w, seed=seed, mask_path=mask, block=256)


def _volume(path: Path, seed: int, orientation: str, labels: Path | None) -> None:
    if path.exists() and (labels is None or labels.exists()):
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    if labels is not None:
        labels.parent.mkdir(parents=True, exist_ok=True)
    write_volume(path, VOLUME_SHAPE, spacing=(1.2, 1.2, 3.0), orientation=orientation, seed=seed, label_path=labels)


def train_demo_model(kind: str, root: Path = ROOT, retrain: bool = False) -> Path:
    """Train one demo model unless it exists; score it on the fresh test data into its card."""
    from models.train import evaluate, make_config, train

    out = root / (SCENE_MODEL if kind == "scene" else VOLUME_MODEL)
    if out.exists() and not retrain:
        print(f"demo: using the existing {kind} model {out} (--retrain to train it again)")
        return out
    data = root / ("scenes" if kind == "scene" else "volumes")
    options = SCENE_TRAINING if kind == "scene" else VOLUME_TRAINING
    names = CLASS_NAMES if kind == "scene" else LABEL_NAMES
    cfg = make_config(data=data / "train", val=data / "val", out=out, class_names=names, device="auto", **options)
    print(f"demo: training the {kind} model ({cfg.encoder}, depth {cfg.encoder_depth}, {cfg.total_steps} steps of "
          f"{cfg.batch_size} x {cfg.tile} px tiles) ...", flush=True)
    t = time.perf_counter()
    for stale in out.parent.glob(out.name.replace(".safetensors", ".*")):
        stale.unlink()  # a retrain starts from scratch, not from an old state
    result = train(cfg, on_epoch=_epoch_line)
    test = evaluate(out, data / "test", device="auto")
    per_class = ", ".join(f"{n} {v['iou']:.3f}" for n, v in test["per_class"].items() if v["iou"] is not None)
    print(f"demo: {kind} model trained in {time.perf_counter() - t:.0f} s; IoU on fresh held-out {kind}s: "
          f"{per_class} (mean {test['mean_iou']:.3f}); card {result.card_md}", flush=True)
    return out


def _epoch_line(r) -> None:
    val = "-" if r.val_mean_iou is None else f"{r.val_mean_iou:.3f}"
    print(f"demo:   epoch {r.epoch} step {r.step}: loss {r.train_loss:.3f}, validation mean IoU {val}", flush=True)


def run_main_job(inputs: Sequence[Path], model: Path, out: Path) -> int:
    """``segpipe batch`` over the inputs if the batch command exists, else ``segpipe run`` per input."""
    from flows.cli import main as segpipe

    if importlib.util.find_spec("flows.cli_batch") is not None:
        argv = ["batch", *map(str, inputs), "--model", str(model), "--out", str(out)]
        print(f"demo: segpipe {' '.join(argv)}", flush=True)
        return segpipe(argv)
    rc = 0
    for path in inputs:
        argv = ["run", str(path), "--model", str(model), "--out", str(out)]
        print(f"demo: segpipe {' '.join(argv)}", flush=True)
        rc = max(rc, segpipe(argv))
    return rc


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m data.demo", description=__doc__.split("\n\n")[0])
    p.add_argument("--retrain", action="store_true", help="train the demo models again")
    p.add_argument("--no-volumes", action="store_true", help="scenes only")
    p.add_argument("--out", type=Path, default=OUT, help="output root of the main job (default demo-out)")
    p.add_argument("--train-only", action="store_true", help="stop after training (no main job)")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    t0 = time.perf_counter()
    volumes = not args.no_volumes
    print(f"demo: synthetic data in {ROOT}", flush=True)
    generate(ROOT, volumes)
    print(f"demo: data ready ({time.perf_counter() - t0:.0f} s)", flush=True)
    scene_model = train_demo_model("scene", ROOT, args.retrain)
    volume_model = train_demo_model("volume", ROOT, args.retrain) if volumes else None
    if args.train_only:
        return 0
    demo = ROOT / "demo"
    # One output root per job (model): each gets its own run report and drift history.
    rc = run_main_job(sorted(demo.glob("*.tif")), scene_model, args.out / "scenes")
    if volume_model is not None:
        rc = max(rc, run_main_job(sorted(demo.glob("*.nii.gz")), volume_model, args.out / "volumes"))
    out = args.out.resolve()
    print(f"demo: done in {time.perf_counter() - t0:.0f} s. Run reports: {out}/scenes/run_report.html and "
          f"{out}/volumes/run_report.html; per input: {out}/<job>/<input name>/ (outputs, record.json, qa.html); "
          f"model cards: {ROOT}/*.card.md", flush=True)
    return rc


if __name__ == "__main__":
    sys.exit(main())
