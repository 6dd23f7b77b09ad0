"""Factories for tiny scenes with known geometry and stand-in models."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import rasterio
import torch
from affine import Affine

from pipeline.spec import ModelSpec


class Identity(torch.nn.Module):
    """Returns its input as class scores (x10 so softmax is sharp): argmax == input argmax."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * 10.0


@dataclass
class Handle:
    module: torch.nn.Module
    spec: ModelSpec
    sha256: str = "0" * 64
    path: Path = Path("stand-in.safetensors")


def identity_handle(bands: int = 3, tile: int = 64, overlap: int = 16, **spec_kw) -> Handle:
    names = tuple(f"c{i}" for i in range(bands))
    return Handle(Identity(), ModelSpec(bands, tuple(range(1, bands + 1)), names, tile=tile, overlap=overlap, **spec_kw))


@pytest.fixture
def make_tif(tmp_path):
    """make_tif(data (B,H,W), name=..., **profile) -> path of a tiled GeoTIFF with a UTM CRS."""

    def make(data: np.ndarray, name: str = "scene.tif", **kw) -> Path:
        path = tmp_path / name
        b, h, w = data.shape
        profile = dict(driver="GTiff", width=w, height=h, count=b, dtype=data.dtype, crs="EPSG:32633",
                       transform=Affine(10, 0, 500000, 0, -10, 6000000), tiled=True, blockxsize=64, blockysize=64)
        profile.update(kw)
        with rasterio.open(path, "w", **profile) as ds:
            ds.write(data)
        return path

    return make
