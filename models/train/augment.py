"""Augmentation with albumentations, applied identically to image and mask.

Geometric transforms (the 8 symmetries of the square, zoom) move image and mask
together: albumentations draws one set of parameters per call and applies it to both
(mask with nearest-neighbour, image with linear interpolation; pixels brought in from
outside become 0 in the image, which is the normalised mean, and IGNORE_INDEX in the mask).
Radiometric transforms touch the image only.

Images here are *normalised* values (about zero mean, unit variance, negative values
included). albumentations' own RandomBrightnessContrast and GaussNoise clip float images to
[0, 1], which would destroy them, so brightness/contrast and noise are the two small
transforms below, acting in standard deviations without clipping.

For 2.5D volume slices the context slices are just channels, so one call transforms the
whole stack with the same parameters.
"""

from __future__ import annotations

from typing import Any

import albumentations as A
import cv2
import numpy as np

from .config import AugmentConfig
from .dataset import IGNORE_INDEX


class ShiftScale(A.ImageOnlyTransform):
    """``x * (1 + c) + b`` with c, b uniform in [-contrast, contrast], [-brightness, brightness]."""

    def __init__(self, brightness: float = 0.1, contrast: float = 0.1, p: float = 0.5) -> None:
        super().__init__(p=p)
        self.brightness, self.contrast = brightness, contrast

    def get_params(self) -> dict[str, float]:
        return {"alpha": 1.0 + self.py_random.uniform(-self.contrast, self.contrast),
                "beta": self.py_random.uniform(-self.brightness, self.brightness)}

    def apply(self, img: np.ndarray, alpha: float = 1.0, beta: float = 0.0, **params: Any) -> np.ndarray:
        return (img * np.float32(alpha) + np.float32(beta)).astype(np.float32)

    def get_transform_init_args_names(self) -> tuple[str, ...]:
        return ("brightness", "contrast")


class Noise(A.ImageOnlyTransform):
    """Additive gaussian noise of ``std`` (normalised units), independent per pixel and channel."""

    def __init__(self, std: float = 0.05, p: float = 0.5) -> None:
        super().__init__(p=p)
        self.std = std

    def get_params_dependent_on_data(self, params: dict[str, Any], data: dict[str, Any]) -> dict[str, Any]:
        shape = params["shape"]
        return {"noise": self.random_generator.standard_normal(shape, dtype=np.float32) * np.float32(self.std)}

    def apply(self, img: np.ndarray, noise: np.ndarray | None = None, **params: Any) -> np.ndarray:
        return img + noise.reshape(img.shape) if noise is not None else img

    def get_transform_init_args_names(self) -> tuple[str, ...]:
        return ("std",)


def build_augment(cfg: AugmentConfig, seed: int = 0) -> A.Compose | None:
    """The training pipeline, or None when augmentation is disabled (validation never uses one)."""
    if not cfg.enabled:
        return None
    steps: list[A.BasicTransform] = []
    if cfg.flips:
        steps.append(A.SquareSymmetry(p=1.0))
    if cfg.scale != (1.0, 1.0) and cfg.scale_p > 0:
        steps.append(A.Affine(scale=cfg.scale, interpolation=cv2.INTER_LINEAR, mask_interpolation=cv2.INTER_NEAREST,
                              border_mode=cv2.BORDER_CONSTANT, fill=0, fill_mask=IGNORE_INDEX, p=cfg.scale_p))
    if cfg.brightness_p > 0 and (cfg.brightness > 0 or cfg.contrast > 0):
        steps.append(ShiftScale(cfg.brightness, cfg.contrast, p=cfg.brightness_p))
    if cfg.noise_p > 0 and cfg.noise_std > 0:
        steps.append(Noise(cfg.noise_std, p=cfg.noise_p))
    return A.Compose(steps, seed=seed) if steps else None


def augment(pipeline: A.Compose | None, image: np.ndarray, label: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Apply ``pipeline`` to a (C, H, W) image and its (H, W) mask with one draw of parameters."""
    if pipeline is None:
        return image, label
    out = pipeline(image=np.ascontiguousarray(image.transpose(1, 2, 0)), mask=label)
    img = out["image"]
    if img.ndim == 2:  # cv2 drops a single channel axis
        img = img[:, :, None]
    return np.ascontiguousarray(img.transpose(2, 0, 1), dtype=np.float32), np.ascontiguousarray(out["mask"])
