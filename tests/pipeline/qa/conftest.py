"""Tiny scenes with known truth and stand-in models for the QA tests."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import rasterio
import torch
from affine import Affine

from pipeline.qa import QAThresholds, SceneQA, finalize_scene_qa
from pipeline.readers.geotiff import open_raster
from pipeline.run.geotiff import segment_scene
from pipeline.options import RunOptions
from pipeline.spec import ModelSpec
from pipeline.tiling import TileGrid

from ..conftest import Handle

CPU = dict(device="cpu", batch_size=4, workers=1, confidence=True)
UTM = dict(crs="EPSG:32633", transform=Affine(10, 0, 500000, 0, -10, 6000000))


class Scaled(torch.nn.Module):
    """Input bands as class scores times ``gain``: argmax == input argmax; small gain = unsure."""

    def __init__(self, gain: float = 10.0) -> None:
        super().__init__()
        self.gain = gain

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.gain


class TilePosition(torch.nn.Module):
    """Two classes from band 1 around 0.5, pushed by the column *inside the tile* (a model with
    an edge effect): with no overlap and a constant blend, neighbouring tiles disagree at borders."""

    def __init__(self, push: float) -> None:
        super().__init__()
        self.push = push

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w = x.shape[-1]
        u = torch.arange(w, dtype=x.dtype, device=x.device) / (w - 1) - 0.5
        fg = 8.0 * (x[:, :1] - 0.5) + self.push * u
        return torch.cat([torch.zeros_like(fg), fg], dim=1)


def handle(module: torch.nn.Module, bands: int = 3, tile: int = 64, overlap: int = 16, names=None) -> Handle:
    names = tuple(names or (f"c{i}" for i in range(max(bands, 2))))
    return Handle(module, ModelSpec(bands, tuple(range(1, bands + 1)), names, tile=tile, overlap=overlap))


def write_tif(path: Path, data: np.ndarray, **kw) -> Path:
    b, h, w = data.shape
    profile = dict(driver="GTiff", width=w, height=h, count=b, dtype=data.dtype, tiled=True,
                   blockxsize=64, blockysize=64, **UTM)
    profile.update(kw)
    profile = {k: v for k, v in profile.items() if v is not None}
    with rasterio.open(path, "w", **profile) as ds:
        ds.write(data)
    return path


def smooth_field(h: int, w: int, seed: int) -> np.ndarray:
    """A smooth random field in [0, 1] (few label changes inside a tile)."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:h, 0:w] / max(h, w)
    f = sum(np.sin(2 * np.pi * (rng.uniform(0.5, 2) * x + rng.uniform(0.5, 2) * y) + rng.uniform(0, 6.3))
            for _ in range(3))
    return ((f - f.min()) / (f.max() - f.min())).astype(np.float32)


@pytest.fixture
def run_qa(tmp_path):
    """run_qa(data, handle, settings=..., thresholds=..., name=..., **tif) -> (SceneResult, QAResult)."""

    def run(data: np.ndarray, h: Handle, settings: RunOptions | None = None,
            thresholds: QAThresholds | None = None, name: str = "scene.tif", out: str = "out", **tif):
        path = write_tif(tmp_path / name, data, **tif)
        s = (settings or RunOptions(**CPU)).resolved(h.spec)
        info = open_raster(path, h.spec.bands)
        grid = TileGrid.build(info.height, info.width, s.tile, s.overlap)
        qa = SceneQA.for_scene(info, grid, h.spec.class_names, h.spec.colors())
        res = segment_scene(path, h, tmp_path / out, s, observers=[qa])
        result = finalize_scene_qa(qa, scene_dir=res.scene_dir, record=res.record, outputs=res.outputs,
                                   thresholds=thresholds)
        return res, result

    return run
