"""From a TrainConfig to what the loop needs: checked pairs, split, planes, and the model spec."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import numpy as np

from pipeline.errors import ConfigError, InputError
from pipeline.spec import ModelSpec, Normalization, default_colors

from .config import TrainConfig
from .dataset import IGNORE_INDEX, LabelledScene, Pair, check_scene_pair, find_pairs, read_scene_pair
from .stats import Plane, class_counts, scene_normalization, scene_plane

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Prepared:
    kind: str
    train: list[Pair]
    val: list[Pair]
    planes: list[Plane]
    spec: ModelSpec
    class_pixels: np.ndarray


def split_pairs(pairs: list[Pair], cfg: TrainConfig) -> tuple[list[Pair], list[Pair]]:
    """Held-out pairs: ``--val`` data, else the manifest's split column, else a seeded fraction."""
    if cfg.val is not None:
        val = find_pairs(cfg.val)
        names = {_key(p.image) for p in val}
        return [p for p in pairs if _key(p.image) not in names], val
    if any(p.split for p in pairs):
        return [p for p in pairs if p.split != "val"], [p for p in pairs if p.split == "val"]
    if cfg.val_split <= 0 or len(pairs) < 2:
        return list(pairs), []
    order = np.random.default_rng(cfg.seed).permutation(len(pairs))
    n_val = min(len(pairs) - 1, max(1, round(len(pairs) * cfg.val_split)))
    val_idx = set(order[:n_val].tolist())
    return [p for i, p in enumerate(pairs) if i not in val_idx], [p for i, p in enumerate(pairs) if i in val_idx]


def prepare(cfg: TrainConfig, spec: ModelSpec | None = None) -> Prepared:
    """Find, check, split and read the data; compute statistics unless ``spec`` (resume) has them."""
    pairs = find_pairs(cfg.data)
    train, val = split_pairs(pairs, cfg)
    if not train:
        raise InputError(f"{cfg.data}: every pair is held out for validation; nothing left to train on")
    if val and cfg.val_max_scenes:
        val = val[: cfg.val_max_scenes]
    kind = train[0].kind
    if any(p.kind != kind for p in val):
        raise InputError("validation data must be of the same kind (scenes or volumes) as the training data")
    if kind == "scene":
        return _prepare_scenes(cfg, train, val, spec)
    return _prepare_volumes(cfg, train, val, spec)


def _prepare_scenes(cfg: TrainConfig, train: list[Pair], val: list[Pair], spec: ModelSpec | None) -> Prepared:
    for p in train + val:
        check_scene_pair(p)
    bands = tuple(spec.bands) if spec else cfg.bands
    scenes = [read_scene_pair(p, bands) for p in train]
    bands = bands or tuple(range(1, scenes[0].image.shape[0] + 1))
    if spec is None:
        norm = scene_normalization(scenes, cfg.stats_samples, cfg.seed)
        spec = _spec(cfg, scenes, bands, 1, norm)
    _check_labels(scenes, spec.num_classes)
    planes = [scene_plane(s, spec.normalization) for s in scenes]
    return Prepared("scene", train, val, planes, spec, class_counts(planes, spec.num_classes))


def _prepare_volumes(cfg: TrainConfig, train: list[Pair], val: list[Pair], spec: ModelSpec | None) -> Prepared:
    from .dataset import check_volume_pair
    from .volumes import volume_normalization, volume_planes

    for p in val:
        check_volume_pair(p)
    norm = spec.normalization if spec else volume_normalization(cfg.norm or "ct_window", cfg.ct_window)
    context = spec.context if spec else cfg.context
    planes = [pl for p in train for pl in volume_planes(p, norm, context, cfg.slice_axis)]
    if spec is None:
        k = cfg.classes or (len(cfg.class_names) if cfg.class_names else _max_label(planes) + 1)
        spec = _build_spec(cfg, (1,), context, norm, cfg.class_names or tuple(f"class_{i}" for i in range(k)), None)
    return Prepared("volume", train, val, planes, spec, class_counts(planes, spec.num_classes))


def _max_label(items) -> int:
    m = 0
    for it in items:
        lab = it.label[it.label != IGNORE_INDEX]
        m = max(m, int(lab.max(initial=0)))
    return m


def _spec(cfg: TrainConfig, scenes: list[LabelledScene], bands: tuple[int, ...], context: int,
          norm: Normalization) -> ModelSpec:
    names = cfg.class_names or scenes[0].class_names or ()
    k = cfg.classes or (len(names) if names else _max_label(scenes) + 1)
    if not names or len(names) != k:
        names = tuple(f"class_{i}" for i in range(k))
    return _build_spec(cfg, bands, context, norm, tuple(names), scenes[0].colors)


def _build_spec(cfg: TrainConfig, bands: tuple[int, ...], context: int, norm: Normalization,
                names: tuple[str, ...], colormap: dict[int, tuple[int, int, int]] | None) -> ModelSpec:
    k = len(names)
    if cfg.class_colors:
        colors = tuple(cfg.class_colors)
    elif colormap and all(i in colormap for i in range(k)):
        colors = tuple(colormap[i] for i in range(k))
    else:
        colors = default_colors(k)
    try:
        return ModelSpec(in_channels=len(bands) * context, bands=bands, class_names=names, class_colors=colors,
                         normalization=norm, context=context, activation="softmax",
                         tile=cfg.spec_tile, overlap=cfg.spec_overlap)
    except ValueError as exc:
        raise ConfigError(f"cannot describe the model to train: {exc}") from exc


def _check_labels(scenes: list[LabelledScene], k: int) -> None:
    for s in scenes:
        lab = s.label[s.label != IGNORE_INDEX]
        if lab.size and int(lab.max()) >= k:
            raise InputError(f"label {s.pair.label} has class value {int(lab.max())} but the model has {k} classes "
                             f"(0..{k - 1}); pass --classes/--class-names, or mark ignored pixels 255")


def describe_pairs(pairs: list[Pair]) -> list[dict[str, str]]:
    return [{"image": str(p.image), "label": str(p.label)} for p in pairs]


def _key(path: Any) -> Any:
    """The same file twice is the same key (a GDAL path is compared as written)."""
    return path if isinstance(path, str) else path.resolve()
