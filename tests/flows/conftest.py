"""Fixtures for the flow tests: one Prefect test server per session, tiny models and scenes.

Telemetry and prompts are switched off before prefect is imported anywhere.
"""

from __future__ import annotations

import os

for _k, _v in {"PREFECT_SERVER_ANALYTICS_ENABLED": "false", "DO_NOT_TRACK": "1", "PREFECT_CLI_PROMPT": "false",
               "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "180",
               "PREFECT_LOGGING_TO_API_WHEN_MISSING_FLOW": "ignore"}.items():
    os.environ[_k] = _v

import sys  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import rasterio  # noqa: E402
import torch  # noqa: E402

from data.synthetic import write_scene  # noqa: E402
from pipeline.spec import ModelSpec, Normalization  # noqa: E402

CLASSES = ("background", "water", "vegetation", "built")
TILE, OVERLAP = 64, 16
# Small decoder: these tests exercise orchestration, not the network.
ARCH_KWARGS = {"decoder_channels": (16, 16, 16, 16, 16)}


def volume_path_available() -> bool:
    try:
        import pipeline.run.nifti  # noqa: F401
    except ImportError:
        return False
    return True


@pytest.fixture(scope="session")
def prefect_server():
    """One Prefect test server (temporary SQLite) for the whole session; yields its API URL."""
    from prefect.settings import PREFECT_API_URL
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=180):
        yield PREFECT_API_URL.value()


@pytest.fixture(scope="session")
def make_checkpoint(tmp_path_factory):
    """Factory: a tiny 1-band, 4-class resnet18 U-Net checkpoint for a seed (cached per seed)."""
    from models.checkpoint import save_checkpoint
    from models.unet import build_model

    made: dict[int, Path] = {}

    def make(seed: int = 0) -> Path:
        if seed not in made:
            torch.manual_seed(seed)
            model = build_model("Unet", "resnet18", 1, len(CLASSES), **ARCH_KWARGS).eval()
            spec = ModelSpec(in_channels=1, bands=(1,), class_names=CLASSES,
                             normalization=Normalization(kind="scale", factor=1e-4), tile=TILE, overlap=OVERLAP)
            path = tmp_path_factory.mktemp("ckpt") / f"tiny-{seed}.safetensors"
            made[seed] = save_checkpoint(model, spec, path, arch="Unet", encoder="resnet18", arch_kwargs=ARCH_KWARGS)
        return made[seed]

    return make


@pytest.fixture
def make_inputs(tmp_path):
    """Factory: a folder of tiny 1-band scenes (+ a corrupt one, + a volume when supported)."""

    def make(n: int = 3, size: int = 96, corrupt: bool = True, volume: bool = True) -> Path:
        folder = tmp_path / "in"
        folder.mkdir(exist_ok=True)
        for i in range(n):
            write_scene(folder / f"scene{i}.tif", size, size + 16 * i, bands=1, seed=i)
        if corrupt:
            (folder / "broken.tif").write_bytes(b"II*\x00 this is not really a tiff" * 10)
        if volume and volume_path_available():
            from data.synthetic import write_volume

            write_volume(folder / "vol.nii.gz", (48, 48, 8))
        return folder

    return make


def read_mask(path: Path) -> np.ndarray:
    with rasterio.open(path) as src:
        return src.read()


def segpipe_cmd() -> list[str]:
    """``segpipe`` (flows.cli) with only the flows' own sub-commands, so these tests do not
    depend on other packages' CLI modules."""
    code = ("import sys, flows.cli as c; c.COMMAND_MODULES = tuple(m for m in c.COMMAND_MODULES "
            "if m.startswith('flows.')); sys.exit(c.main(sys.argv[1:]))")
    return [sys.executable, "-c", code]


def child_env(api_url: str, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST")}
    env.update(PREFECT_API_URL=api_url, **extra)
    return env
