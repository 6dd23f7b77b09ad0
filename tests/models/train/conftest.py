"""Tiny labelled scenes and volumes with known geometry, and a tiny training config."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import rasterio
import torch
from affine import Affine

from models.train import make_config

TRANSFORM = Affine(10, 0, 500000, 0, -10, 6000000)


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """Tiny models gain nothing from threads; on a shared 2-core machine idle OpenMP threads
    spin-waiting on busy cores made these tests 10x slower."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def write_tif(path: Path, data: np.ndarray, *, crs="EPSG:32633", transform=TRANSFORM, nodata=None) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    b, h, w = data.shape
    with rasterio.open(path, "w", driver="GTiff", width=w, height=h, count=b, dtype=data.dtype, crs=crs,
                       transform=transform, nodata=nodata) as ds:
        ds.write(data)
    return path


def easy_scene(seed: int, size: int = 96) -> tuple[np.ndarray, np.ndarray]:
    """3 bands, 3 classes a small network learns in a few steps: blobs with distinct spectra."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size, :size]
    label = np.zeros((size, size), np.uint8)
    for cls in (1, 2):
        for _ in range(3):
            cy, cx, r = rng.integers(0, size, 2).tolist() + [int(rng.integers(8, 20))]
            label[(yy - cy) ** 2 + (xx - cx) ** 2 < r * r] = cls
    spectra = np.array([[1000, 1200, 900], [300, 500, 200], [600, 2500, 800]], np.float32)
    image = spectra[label].transpose(2, 0, 1) + rng.normal(0, 50, (3, size, size))
    return image.astype(np.uint16), label


@pytest.fixture
def scene_data(tmp_path):
    """make(n, size) -> folder with images/ and labels/ of n easy scenes."""

    def make(n: int = 3, size: int = 96) -> Path:
        root = tmp_path / "data"
        for i in range(n):
            image, label = easy_scene(i, size)
            write_tif(root / "images" / f"s{i}.tif", image)
            write_tif(root / "labels" / f"s{i}.tif", label[None], nodata=255)
        return root

    return make


@pytest.fixture
def tiny_config(tmp_path):
    """make(data, **overrides) -> the smallest useful TrainConfig (resnet18, depth 3, 64 px tiles)."""

    def make(data: Path, **kw):
        fields = dict(data=data, out=tmp_path / "model.safetensors", encoder="resnet18", encoder_depth=3,
                      tile=64, infer_tile=64, overlap=16, batch_size=4, steps_per_epoch=2, epochs=1, lr=3e-3,
                      warmup_steps=0, val_split=0.34, device="cpu", workers=1, stats_samples=5000)
        fields.update(kw)
        return make_config(**fields)

    return make
