import numpy as np
import pytest
import torch

from models.checkpoint import load_checkpoint
from models.train import Trainer, card_paths, load_state, read_card, state_path_for, train
from models.train.loss import SegLoss
from models.train.metrics import confusion, scores
from models.train.prepare import prepare
from models.train.sampling import TileSampler


def test_a_few_steps_lower_the_loss(scene_data, tiny_config):
    cfg = tiny_config(scene_data(2), lr=3e-3)
    data = prepare(cfg)
    trainer = Trainer(cfg, data.spec, "cpu")
    sampler = TileSampler(data.planes, data.spec.num_classes, 64, 0.5, np.random.default_rng(0))
    tiles = sampler.batch(4)
    x = torch.from_numpy(np.stack([t.image for t in tiles]))
    y = torch.from_numpy(np.stack([t.label for t in tiles]).astype(np.int64))
    losses = [trainer.train_step(x, y) for _ in range(8)]
    assert trainer.step == 8
    assert losses[-1] < 0.7 * losses[0], losses


def test_loss_ignores_ignored_pixels():
    logits = torch.randn(2, 3, 8, 8)
    y = torch.randint(0, 3, (2, 8, 8))
    y2 = y.clone()
    y2[:, :, :4] = 255
    crit = SegLoss(3)
    changed = logits.clone()
    changed[:, :, :, :4] = 50.0  # wild logits where the label is ignored
    assert torch.isclose(crit(logits[..., 4:], y[..., 4:]), crit(changed[..., 4:], y2[..., 4:]))
    assert torch.isclose(crit(changed, y2), crit(logits, y2))


def test_checkpoint_round_trip_rebuilds_the_same_model(scene_data, tiny_config):
    cfg = tiny_config(scene_data(3), steps_per_epoch=2, epochs=1)
    result = train(cfg)
    loaded = load_checkpoint(result.checkpoint)
    spec = loaded.spec
    assert spec.normalization.kind == "meanstd" and len(spec.normalization.mean) == 3
    assert spec.tile == 64 and spec.overlap == 16 and spec.class_names == ("class_0", "class_1", "class_2")
    state = load_state(result.state)
    trainer = Trainer(cfg, spec, "cpu")
    trainer.model.load_state_dict(state.model)
    trainer.model.eval()
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        np.testing.assert_array_equal(loaded.module(x).numpy(), trainer.model(x).numpy())
    card = read_card(result.checkpoint)
    assert card["model"]["sha256"] == loaded.sha256
    assert set(card["validation"]["per_class"]) == set(spec.class_names)
    assert card_paths(result.checkpoint)[0].read_text().startswith("# Model card")
    assert loaded.metadata["training"]["steps_done"] == 2


def test_resume_continues_from_the_saved_step(scene_data, tiny_config):
    data = scene_data(3)
    first = train(tiny_config(data, steps=2, steps_per_epoch=2))
    assert load_state(first.state).step == 2
    seen = []
    cfg = tiny_config(data, steps=4, steps_per_epoch=2, resume=first.checkpoint)
    second = train(cfg, progress=lambda p: seen.append(p.step))
    assert seen == [3, 4]
    assert second.steps_done == 4 and load_state(state_path_for(cfg.out)).step == 4
    history = read_card(second.checkpoint)["history"]
    assert [h["step"] for h in history] == [2, 4]


def test_resume_refuses_a_different_network(scene_data, tiny_config):
    from pipeline.errors import CheckpointError

    data = scene_data(3)
    first = train(tiny_config(data, steps=1, steps_per_epoch=1))
    with pytest.raises(CheckpointError, match="resnet18"):
        train(tiny_config(data, steps=2, encoder_depth=4, resume=first.checkpoint))


def test_scores_from_confusion():
    label = np.array([[0, 0, 1, 1], [2, 2, 255, 1]], np.uint8)
    pred = np.array([[0, 1, 1, 1], [2, 255, 0, 1]], np.uint8)
    cm = confusion(label, pred, 3, pred_nodata=255)
    s = scores(cm, ("a", "b", "c"))
    # a: tp 1, fn 1, fp 0 -> 1/2; b: tp 3, fp 1 -> 3/4; c: tp 1, one pixel unpredicted (a miss) -> 1/2
    assert s.iou == (0.5, 0.75, 0.5)
    assert s.dice[1] == pytest.approx(6 / 7)
    assert s.support == (2, 3, 2)
