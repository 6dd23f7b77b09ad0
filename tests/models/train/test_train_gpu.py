"""Training on a GPU: bf16 autocast steps lower the loss and the saved model runs in the engine.

Run on a CUDA machine with ``make test-gpu``; skipped elsewhere.
"""

import numpy as np
import pytest
import torch

from models.checkpoint import load_checkpoint
from models.train import Trainer, read_card, train
from models.train.prepare import prepare
from models.train.sampling import TileSampler

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device"),
]


def test_bf16_steps_lower_the_loss_on_gpu(scene_data, tiny_config):
    cfg = tiny_config(scene_data(2), lr=3e-3, device="cuda")
    data = prepare(cfg)
    trainer = Trainer(cfg, data.spec, "cuda")
    assert trainer.autocast
    sampler = TileSampler(data.planes, data.spec.num_classes, 64, 0.5, np.random.default_rng(0))
    tiles = sampler.batch(4)
    x = torch.from_numpy(np.stack([t.image for t in tiles]))
    y = torch.from_numpy(np.stack([t.label for t in tiles]).astype(np.int64))
    losses = [trainer.train_step(x, y) for _ in range(8)]
    assert all(np.isfinite(losses))
    assert losses[-1] < 0.7 * losses[0], losses


def test_gpu_training_writes_a_checkpoint_and_card(scene_data, tiny_config):
    cfg = tiny_config(scene_data(3), steps_per_epoch=3, epochs=1, device="cuda")
    result = train(cfg)
    loaded = load_checkpoint(result.checkpoint)
    assert loaded.spec.num_classes >= 2
    card = read_card(result.checkpoint)
    assert card["training"]["device"].startswith("cuda")
