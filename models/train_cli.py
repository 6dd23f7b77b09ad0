"""``segpipe train``: fit the ResNet-U-Net on labelled scenes or volumes, with a progress bar.

Writes the checkpoint (best validation mean IoU), its training state for ``--resume`` and
its model card (markdown + JSON) side by side.
"""

from __future__ import annotations

import argparse
import contextlib
import sys
from pathlib import Path
from typing import Any


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "train", help="train a U-Net on labelled scenes (GeoTIFF) or volumes (NIfTI)",
        description="Train on pairs from DIR/images + DIR/labels (same file names) or a CSV manifest "
        "(image,label[,split]). Validation runs through the production engine after every epoch.",
    )
    p.add_argument("--data", required=True, type=Path, help="folder with images/ and labels/, or a CSV manifest")
    p.add_argument("--out", required=True, type=Path, help="checkpoint to write (.safetensors)")
    p.add_argument("--val", type=Path, help="held-out folder/manifest (default: split off --data)")
    p.add_argument("--val-split", type=float, help="fraction of pairs held out when no --val (default 0.2)")
    p.add_argument("--encoder", help="smp encoder (default resnet34)")
    p.add_argument("--depth", dest="encoder_depth", type=int, choices=[3, 4, 5], help="encoder depth (default 5)")
    p.add_argument("--encoder-weights", type=Path, help="local ResNet state dict to start from (never downloaded)")
    p.add_argument("--epochs", type=int, help="epochs (default 10); validation after each")
    p.add_argument("--steps-per-epoch", type=int, help="optimizer steps per epoch (default 100)")
    p.add_argument("--steps", type=int, help="total steps (overrides epochs x steps-per-epoch)")
    p.add_argument("--batch-size", type=int, help="tiles per step (default 8)")
    p.add_argument("--tile", type=int, help="training tile, multiple of 32 (default 256)")
    p.add_argument("--infer-tile", type=int, help="inference tile stored in the checkpoint (default max(tile, 256))")
    p.add_argument("--overlap", type=int, help="inference overlap stored in the checkpoint")
    p.add_argument("--lr", type=float, help="peak learning rate (default 1e-3)")
    p.add_argument("--patience", type=int, help="epochs without improvement before stopping (default 5)")
    p.add_argument("--focal", dest="focal_gamma", type=float, help="focal gamma instead of plain cross-entropy")
    p.add_argument("--no-augment", action="store_true", help="train without augmentation")
    p.add_argument("--seed", type=int, help="random seed (default 0)")
    p.add_argument("--resume", type=Path, help="continue from this checkpoint's .state.safetensors")
    p.add_argument("--device", help="auto | cpu | cuda | cuda:N")
    p.add_argument("--precision", choices=["auto", "fp32", "bf16"],
                   help="auto (default) = bf16 autocast on a GPU and on CPUs with AMX-BF16/AVX512-BF16, else fp32")
    p.add_argument("--bands", type=int, nargs="+", help="1-based bands to use (default all)")
    p.add_argument("--classes", type=int, help="number of classes (default: from the labels)")
    p.add_argument("--class-names", nargs="+", help="one name per class, background first")
    p.add_argument("--norm", choices=["meanstd", "ct_window", "zscore"], help="volumes: ct_window (default) or zscore")
    p.add_argument("--ct-window", type=float, nargs=2, metavar=("LOW", "HIGH"), help="HU window (default -200 800)")
    p.add_argument("--context", type=int, help="volumes: 2.5D slices as channels (odd, default 1)")
    p.set_defaults(func=_train)


def config_from_args(args: argparse.Namespace) -> Any:
    from models.train import AugmentConfig, make_config

    fields = {k: getattr(args, k, None) for k in (
        "data", "out", "val", "val_split", "encoder", "encoder_depth", "encoder_weights", "epochs",
        "steps_per_epoch", "steps", "batch_size", "tile", "infer_tile", "overlap", "lr", "patience",
        "focal_gamma", "seed", "resume", "device", "precision", "classes", "norm", "context")}
    fields["bands"] = tuple(args.bands) if args.bands else None
    fields["class_names"] = tuple(args.class_names) if args.class_names else None
    fields["ct_window"] = tuple(args.ct_window) if args.ct_window else None
    if args.no_augment:
        fields["augment"] = AugmentConfig(enabled=False)
    return make_config(**fields)


def _train(args: argparse.Namespace) -> int:
    from models.train import train

    cfg = config_from_args(args)
    bar = _Bar(cfg.total_steps, disable=args.quiet)
    try:
        result = train(cfg, progress=bar.update, on_epoch=bar.epoch)
    finally:
        bar.close()
    best = "-" if result.best_mean_iou is None else f"{result.best_mean_iou:.4f}"
    print(f"{result.checkpoint}: {result.steps_done} steps in {result.wall_s:.0f} s, best validation mean IoU "
          f"{best} (epoch {result.best_epoch}); card {result.card_md}")
    return 0


class _Bar:
    """tqdm over steps with loss, learning rate and tiles/s; one line per epoch.

    While it is shown, log lines go through ``tqdm.contrib.logging`` (printed above the bar,
    not into it). It starts at the first step's count, so its rate counts from then on
    (``flows.progress.Bar`` does the same for ``run`` and ``batch``; ``models`` does not import ``flows``).
    """

    def __init__(self, total: int, disable: bool) -> None:
        self.total, self.bar = total, None
        self.disable = disable or not sys.stderr.isatty()
        self._redirect = contextlib.ExitStack()

    def update(self, p: Any) -> None:
        if self.disable:
            return
        if self.bar is None:
            from tqdm import tqdm
            from tqdm.contrib.logging import logging_redirect_tqdm

            self._redirect.enter_context(logging_redirect_tqdm())
            self.bar = tqdm(total=p.total_steps, initial=p.step - 1, unit="step", dynamic_ncols=True)
        self.bar.update(p.step - self.bar.n)
        self.bar.set_postfix_str(f"epoch {p.epoch} loss {p.loss:.4f} lr {p.lr:.2e} {p.tiles_per_s:.1f} tiles/s")

    def epoch(self, r: Any) -> None:
        val = "-" if r.val_mean_iou is None else f"{r.val_mean_iou:.4f}"
        line = f"epoch {r.epoch} step {r.step}: loss {r.train_loss:.4f}, val mean IoU {val}" + (" *" if r.improved else "")
        (self.bar.write if self.bar is not None else lambda s: print(s, file=sys.stderr))(line)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
        self._redirect.close()
