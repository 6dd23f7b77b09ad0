"""The training loop: AdamW + warmup/cosine, bf16 autocast where it pays, gradient clipping, seeds,
validation through the engine after every epoch, early stopping, checkpoint + card + resume.

Files written next to ``cfg.out`` (``model.safetensors``):

    model.safetensors         the best model so far (by validation mean IoU), self-describing
    model.state.safetensors   last weights + optimizer + step, for ``--resume`` (pickle-free)
    model.card.md / .json     model card with per-class IoU/Dice on the held-out data
"""

from __future__ import annotations

import logging
import math
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from models.checkpoint import file_sha256, save_checkpoint
from models.unet import build_model, count_parameters
from pipeline.errors import CheckpointError
from pipeline.cpu import choose_precision
from pipeline.engine import resolve_device
from pipeline.options import RunOptions
from pipeline.spec import ModelSpec

from .augment import augment, build_augment
from .card import write_card
from .config import TrainConfig
from .loss import SegLoss
from .prepare import Prepared, describe_pairs, prepare
from .sampling import TileSampler
from .state import TrainingState, load_state, save_state, state_path_for
from .validate import TrainingHandle, Validation, validate

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TrainProgress:
    """Reported after every step: the CLI draws a bar, the flow logs every so often."""

    step: int
    total_steps: int
    epoch: int
    loss: float
    lr: float
    tiles_per_s: float


@dataclass(frozen=True)
class EpochReport:
    epoch: int
    step: int
    train_loss: float
    val_mean_iou: float | None
    best_mean_iou: float | None
    improved: bool
    stopping: bool


@dataclass(frozen=True)
class TrainResult:
    checkpoint: Path
    state: Path
    card_md: Path
    card_json: Path
    steps_done: int
    best_epoch: int | None
    best_mean_iou: float | None
    validation: dict[str, Any] | None
    wall_s: float


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def lr_at(step: int, cfg: TrainConfig) -> float:
    """Linear warmup, then cosine from ``lr`` down to ``lr * min_lr_ratio`` at the last step."""
    total, warm = cfg.total_steps, min(cfg.warmup_steps, max(cfg.total_steps - 1, 0))
    if step < warm:
        return cfg.lr * (step + 1) / warm
    t = (step - warm) / max(1, total - warm - 1)
    floor = cfg.lr * cfg.min_lr_ratio
    return floor + (cfg.lr - floor) * 0.5 * (1 + math.cos(math.pi * min(t, 1.0)))


class Trainer:
    """Model, optimizer and loss; one call of :meth:`train_step` is one optimizer step."""

    def __init__(self, cfg: TrainConfig, spec: ModelSpec, device: torch.device | str = "cpu") -> None:
        seed_everything(cfg.seed)
        self.cfg, self.spec, self.device = cfg, spec, torch.device(device)
        self.model = build_model(cfg.arch, cfg.encoder, spec.in_channels, spec.out_channels,
                                 encoder_weights=cfg.encoder_weights, **cfg.arch_kwargs).to(self.device)
        self.optimizer = torch.optim.AdamW(self.model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
        self.criterion = SegLoss(spec.num_classes, dice_weight=cfg.dice_weight, ce_weight=cfg.ce_weight,
                                 focal_gamma=cfg.focal_gamma)
        self.step = 0
        # bf16 autocast on a GPU and on CPUs with native bf16 (pipeline.cpu): the convolutions and
        # matmuls run in bf16; the weights, the loss and the optimizer stay fp32.
        self.precision, self.precision_reason = choose_precision(self.device, cfg.precision)
        self.autocast = self.precision == "bf16"

    def train_step(self, x: torch.Tensor, y: torch.Tensor) -> float:
        self.model.train()
        lr = lr_at(self.step, self.cfg)
        for g in self.optimizer.param_groups:
            g["lr"] = lr
        x = x.to(self.device, non_blocking=True)
        y = y.to(self.device, non_blocking=True)
        with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.autocast):
            logits = self.model(x)
        loss = self.criterion(logits.float(), y)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.cfg.grad_clip)
        self.optimizer.step()
        self.step += 1
        return float(loss.detach())

    def restore(self, state: TrainingState) -> None:
        try:
            self.model.load_state_dict(state.model, strict=True)
            self.optimizer.load_state_dict(state.optimizer)
        except (RuntimeError, ValueError, KeyError) as exc:
            raise CheckpointError(f"training state does not fit this network ({self.cfg.arch}/{self.cfg.encoder}): "
                                  f"{str(exc).splitlines()[0]}") from exc
        if state.torch_rng is not None:
            torch.set_rng_state(state.torch_rng)
        self.step = state.step


def _batch(sampler: TileSampler, pipeline: Any, n: int) -> tuple[torch.Tensor, torch.Tensor]:
    images, labels = [], []
    for tile in sampler.batch(n):
        img, lab = augment(pipeline, tile.image, tile.label)
        images.append(img)
        labels.append(lab)
    return torch.from_numpy(np.stack(images)), torch.from_numpy(np.stack(labels).astype(np.int64))


@dataclass
class _Book:
    """What the loop remembers across epochs (and across a resume)."""

    epoch: int = 0
    best: float | None = None
    best_epoch: int | None = None
    bad_epochs: int = 0
    history: list[dict[str, Any]] = field(default_factory=list)
    best_validation: dict[str, Any] | None = None
    wall_s: float = 0.0
    stopped_early: bool = False


def train(cfg: TrainConfig, *, progress: Callable[[TrainProgress], None] | None = None,
          on_epoch: Callable[[EpochReport], None] | None = None) -> TrainResult:
    """Train (or resume) per ``cfg``; returns where the checkpoint, state and card are."""
    t0 = time.perf_counter()
    device = resolve_device(cfg.device)
    state = load_state(cfg.resume) if cfg.resume else None
    spec = ModelSpec.from_dict(state.meta["spec"]) if state else None
    data = prepare(cfg, spec)
    trainer = Trainer(cfg, data.spec, device)
    book = _Book()
    rng = np.random.default_rng(cfg.seed)
    if state is not None:
        _check_resume(state, cfg)
        trainer.restore(state)
        book = _Book(**{k: state.meta["book"][k] for k in _Book.__dataclass_fields__})
        rng.bit_generator.state = state.meta["sampler_rng"]
        log.info("resuming from %s at step %d (epoch %d)", cfg.resume, trainer.step, book.epoch)
    sampler = TileSampler(data.planes, data.spec.num_classes, cfg.tile, cfg.class_balance, rng)
    pipeline = build_augment(cfg.augment, seed=cfg.seed + trainer.step)
    out, state_path = Path(cfg.out), state_path_for(cfg.out)
    handle = TrainingHandle(trainer.model, data.spec, out)
    settings = RunOptions(device=str(device), batch_size=cfg.batch_size, workers=cfg.workers)
    log.info("training on %d %s(s), validating on %d; %d steps on %s; pixels per class %s",
             len(data.train), data.kind, len(data.val), cfg.total_steps, device, data.class_pixels.tolist())
    while trainer.step < cfg.total_steps:
        t_epoch = time.perf_counter()
        loss = _run_epoch(trainer, sampler, pipeline, cfg, book.epoch, progress)
        book.epoch += 1
        report = _end_epoch(trainer, data, cfg, book, handle, settings, loss)
        book.wall_s += time.perf_counter() - t_epoch
        save_state(state_path, trainer.model, trainer.optimizer, _state_meta(trainer, data.spec, cfg, book, rng))
        _card(trainer, data, cfg, book)
        if on_epoch is not None:
            on_epoch(report)
        if report.stopping:
            break
    md, js = _card(trainer, data, cfg, book)
    return TrainResult(out, state_path, md, js, trainer.step, book.best_epoch, book.best, book.best_validation,
                       time.perf_counter() - t0)


def _run_epoch(trainer: Trainer, sampler: TileSampler, pipeline: Any, cfg: TrainConfig, epoch: int,
               progress: Callable[[TrainProgress], None] | None) -> float:
    end = min(cfg.total_steps, (trainer.step // cfg.steps_per_epoch + 1) * cfg.steps_per_epoch)
    losses = []
    t = time.perf_counter()
    while trainer.step < end:
        x, y = _batch(sampler, pipeline, cfg.batch_size)
        losses.append(trainer.train_step(x, y))
        if progress is not None:
            rate = len(losses) * cfg.batch_size / max(time.perf_counter() - t, 1e-9)
            progress(TrainProgress(trainer.step, cfg.total_steps, epoch + 1, float(np.mean(losses[-20:])),
                                   lr_at(trainer.step - 1, cfg), rate))
    return float(np.mean(losses)) if losses else float("nan")


def _end_epoch(trainer: Trainer, data: Prepared, cfg: TrainConfig, book: _Book, handle: TrainingHandle,
               settings: RunOptions, loss: float) -> EpochReport:
    val: Validation | None = validate(handle, data.val, settings) if data.val else None
    miou = val.scores.mean_iou if val else None
    improved = val is None or book.best is None or miou > book.best
    if improved:
        book.best, book.best_epoch, book.bad_epochs = miou, book.epoch, 0
        book.best_validation = val.to_dict() if val else None
        _save_model(trainer, data, cfg, book, book.best_validation)
    else:
        book.bad_epochs += 1
    book.history.append({"epoch": book.epoch, "step": trainer.step, "train_loss": loss, "val_mean_iou": miou,
                         "lr": lr_at(trainer.step - 1, cfg)})
    log.info("epoch %d step %d: train loss %.4f, val mean IoU %s%s", book.epoch, trainer.step, loss,
             "-" if miou is None else f"{miou:.4f}", " (best)" if improved else "")
    stopping = val is not None and book.bad_epochs >= cfg.patience
    if stopping:
        book.stopped_early = True
        log.info("no better validation mean IoU for %d epochs: stopping early", cfg.patience)
    return EpochReport(book.epoch, trainer.step, loss, miou, book.best, improved, stopping)


def _training_record(trainer: Trainer, data: Prepared, cfg: TrainConfig, book: _Book) -> dict[str, Any]:
    return {
        "input_kind": data.kind,  # "scene" or "volume": checked before a run feeds it the other kind
        "config": cfg.model_dump(mode="json"),
        "steps_done": trainer.step, "epochs_done": book.epoch, "best_epoch": book.best_epoch,
        "best_val_mean_iou": book.best, "validation": book.best_validation,
        "train": describe_pairs(data.train), "val": describe_pairs(data.val),
        "class_pixels": dict(zip(data.spec.class_names, data.class_pixels.tolist())),
    }


def _save_model(trainer: Trainer, data: Prepared, cfg: TrainConfig, book: _Book, val: dict | None) -> None:
    save_checkpoint(trainer.model, data.spec, cfg.out, arch=cfg.arch, encoder=cfg.encoder,
                    arch_kwargs=cfg.arch_kwargs, provenance={"source": {"kind": "trained", "data": str(cfg.data)}},
                    training=_training_record(trainer, data, cfg, book))


def _state_meta(trainer: Trainer, spec: ModelSpec, cfg: TrainConfig, book: _Book,
                rng: np.random.Generator) -> dict[str, Any]:
    return {"step": trainer.step, "epoch": book.epoch, "arch": cfg.arch, "encoder": cfg.encoder,
            "arch_kwargs": cfg.arch_kwargs, "spec": spec.to_dict(), "sampler_rng": rng.bit_generator.state,
            "book": {k: getattr(book, k) for k in _Book.__dataclass_fields__}, "config": cfg.model_dump(mode="json")}


def _check_resume(state: TrainingState, cfg: TrainConfig) -> None:
    want = (cfg.arch, cfg.encoder, cfg.arch_kwargs)
    have = (state.meta["arch"], state.meta["encoder"], state.meta["arch_kwargs"])
    if want != have:
        raise CheckpointError(f"{cfg.resume}: the training state is for {have[0]}/{have[1]} {have[2]}, but this run "
                              f"builds {want[0]}/{want[1]} {want[2]}; resume with the same --encoder/--depth")


def _card(trainer: Trainer, data: Prepared, cfg: TrainConfig, book: _Book) -> tuple[Path, Path]:
    out = Path(cfg.out)
    doc = {
        "model": {"path": str(out), "sha256": file_sha256(out) if out.exists() else None, "arch": cfg.arch,
                  "encoder": cfg.encoder, "arch_kwargs": cfg.arch_kwargs,
                  "num_parameters": count_parameters(trainer.model), "spec": data.spec.to_dict()},
        "data": {"kind": data.kind, "source": str(cfg.data), "train": describe_pairs(data.train),
                 "val": describe_pairs(data.val),
                 "class_pixels": dict(zip(data.spec.class_names, data.class_pixels.tolist()))},
        "training": {"steps_done": trainer.step, "total_steps": cfg.total_steps, "epochs_done": book.epoch,
                     "best_epoch": book.best_epoch, "batch_size": cfg.batch_size, "tile": cfg.tile,
                     "device": str(trainer.device), "precision": trainer.precision,
                     "precision_reason": trainer.precision_reason, "wall_s": book.wall_s,
                     "stopped_early": book.stopped_early, "config": cfg.model_dump(mode="json")},
        "validation": book.best_validation,
        "history": book.history,
    }
    try:
        from .card import read_card

        old = read_card(out)
        # A test evaluation added after training stays while it is about this very file.
        if old.get("test", {}).get("sha256") == doc["model"]["sha256"]:
            doc["test"] = old["test"]
    except (OSError, ValueError):
        pass
    return write_card(out, doc)
