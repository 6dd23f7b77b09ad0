"""bf16 is safe where ``auto`` picks it: a trained model's masks agree with fp32 on >= 99.9 % of pixels.

The models are trained here, on the demo's own synthetic data (``data.synthetic``) with the
demo's recipe cut down to a few dozen steps, so the test holds for what users run: a
trained network, whose logits are decisive, not random weights. Training itself runs at
``auto`` too, so on a CPU with native bf16 it is bf16-trained (and checked to learn).
"""

from __future__ import annotations

import numpy as np
import pytest
import rasterio

from data.synthetic import CLASS_NAMES, LABEL_NAMES, write_scene, write_volume
from models.checkpoint import load_checkpoint
from models.train import make_config, train
from models.train.config import AugmentConfig
from pipeline import cpu
from pipeline.run.geotiff import segment_scene
from pipeline.options import RunOptions
from pipeline.run.nifti import segment_volume

AGREEMENT = 0.999


def _pairs(root, split, seeds, write):
    for s in seeds:
        image = root / split / "images" / f"{split}{s}{write.suffix}"
        image.parent.mkdir(parents=True, exist_ok=True)
        (root / split / "labels").mkdir(exist_ok=True)
        write(image, s, root / split / "labels" / image.name)
    return root / split


class _Scene:
    suffix = ".tif"

    def __call__(self, path, seed, labels):
        write_scene(path, 256, 256, seed=seed, mask_path=labels, block=256)


class _Volume:
    suffix = ".nii.gz"

    def __call__(self, path, seed, labels):
        write_volume(path, (96, 96, 24), spacing=(1.2, 1.2, 3.0), seed=seed, label_path=labels)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """{'scene': (checkpoint, test image, test labels), 'volume': (...)}, trained once per module."""
    root = tmp_path_factory.mktemp("bf16")
    common = dict(device="cpu", encoder="resnet18", encoder_depth=3, tile=64, batch_size=8, epochs=1,
                  warmup_steps=4, patience=2, seed=0, workers=1)
    out = {}
    for kind, write, steps, extra in (
        ("scene", _Scene(), 40, dict(class_names=CLASS_NAMES, infer_tile=128, overlap=32, lr=3e-3)),
        ("volume", _Volume(), 90, dict(class_names=LABEL_NAMES, infer_tile=64, overlap=16, lr=4e-3, context=3,
                                       class_balance=0.8, norm="ct_window", ct_window=(-150.0, 350.0),
                                       augment=AugmentConfig(brightness_p=0.0, noise_p=0.0))),
    ):
        base = root / kind
        train_dir = _pairs(base, "train", range(100, 104 if kind == "scene" else 102), write)
        val_dir = _pairs(base, "val", (200,), write)
        test_dir = _pairs(base, "test", (300,), write)
        cfg = make_config(data=train_dir, val=val_dir, out=base / "model.safetensors",
                          steps_per_epoch=steps, **common, **extra)
        result = train(cfg)
        assert result.best_mean_iou > 0.8, (kind, result.best_mean_iou)  # a trained model, not noise
        image = next((test_dir / "images").iterdir())
        out[kind] = (result.checkpoint, image, test_dir / "labels" / image.name)
    return out


@pytest.fixture
def native_bf16(monkeypatch):
    """``auto`` as on a CPU with AMX-BF16/AVX512-BF16, whatever this machine has."""
    monkeypatch.setenv(cpu.ENV_OVERRIDE, "1")


def _iou(pred, truth, k):
    inter = np.logical_and(pred == k, truth == k).sum()
    union = np.logical_or(pred == k, truth == k).sum()
    return inter / union if union else None


def test_scene_bf16_agrees_with_fp32_on_a_trained_model(trained, tmp_path, native_bf16):
    ckpt, image, labels = trained["scene"]
    model = load_checkpoint(ckpt)
    masks = {}
    for precision in ("fp32", "auto"):
        res = segment_scene(image, model, tmp_path / precision, RunOptions(device="cpu", precision=precision),
                            qa=False)
        assert res.record["facts"]["precision"] == ("fp32" if precision == "fp32" else "bf16")
        with rasterio.open(res.outputs["mask"]) as ds:
            masks[precision] = ds.read(1)
    with rasterio.open(labels) as ds:
        truth = ds.read(1)
    agree = (masks["fp32"] == masks["auto"]).mean()
    assert agree >= AGREEMENT, agree
    for k in range(1, len(CLASS_NAMES)):  # and bf16 scores what fp32 scores against the labels
        a, b = _iou(masks["fp32"], truth, k), _iou(masks["auto"], truth, k)
        assert a is None or abs(a - b) < 0.002, (k, a, b)


@pytest.mark.parametrize("tile", [64, 96], ids=["tiled planes", "one tile per plane"])
def test_volume_bf16_agrees_with_fp32_on_a_trained_2p5d_model(trained, tmp_path, native_bf16, tile):
    import nibabel as nib

    ckpt, image, labels = trained["volume"]
    model = load_checkpoint(ckpt)
    out = {}
    for precision in ("fp32", "auto"):
        s = RunOptions(device="cpu", precision=precision, tile=tile, overlap=16)
        res = segment_volume(image, model, tmp_path / precision, s)
        facts = res.record["facts"]
        assert facts["precision"] == ("fp32" if precision == "fp32" else "bf16")
        assert facts["context"] == 3 and (facts["tiles_per_slice"] > 1) == (tile == 64)
        out[precision] = np.asarray(nib.load(res.outputs["labels"]).dataobj)
    truth = np.asarray(nib.load(labels).dataobj)
    agree = (out["fp32"] == out["auto"]).mean()
    assert agree >= AGREEMENT, agree
    for k in range(1, len(LABEL_NAMES)):
        a, b = _iou(out["fp32"], truth, k), _iou(out["auto"], truth, k)
        assert a is None or abs(a - b) < 0.005, (k, a, b)


@pytest.mark.parametrize("native", ["1", "0"], ids=["native bf16", "no native bf16"])
def test_training_autocasts_to_bf16_where_the_cpu_has_it_and_the_card_says_so(
        scene_data, tiny_config, monkeypatch, native):
    import torch

    from models.train import Trainer, read_card
    from models.train.prepare import prepare

    monkeypatch.setenv(cpu.ENV_OVERRIDE, native)
    want = "bf16" if native == "1" else "fp32"
    cfg = tiny_config(scene_data(2))
    data = prepare(cfg)
    trainer = Trainer(cfg, data.spec, "cpu")
    seen = []
    trainer.model.encoder.conv1.register_forward_hook(lambda m, i, o: seen.append(o.dtype))
    x, y = torch.randn(2, 3, 64, 64), torch.randint(0, 3, (2, 64, 64))
    trainer.train_step(x, y)
    assert seen == [torch.bfloat16 if native == "1" else torch.float32]
    assert all(p.dtype == torch.float32 for p in trainer.model.parameters())  # fp32 master weights
    assert trainer.precision == want
    result = train(cfg)
    card = read_card(result.checkpoint)
    assert card["training"]["precision"] == want
    assert card["training"]["precision_reason"] == cpu.choose_precision(torch.device("cpu"), "auto")[1]
    assert f"({want}, auto: CPU" in result.card_md.read_text()


def test_training_precision_fp32_is_kept_on_a_bf16_cpu(scene_data, tiny_config, monkeypatch):
    from models.train import Trainer
    from models.train.prepare import prepare

    monkeypatch.setenv(cpu.ENV_OVERRIDE, "1")
    cfg = tiny_config(scene_data(2), precision="fp32")
    trainer = Trainer(cfg, prepare(cfg).spec, "cpu")
    assert (trainer.precision, trainer.autocast) == ("fp32", False)
