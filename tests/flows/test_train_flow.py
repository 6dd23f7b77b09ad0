"""The Prefect training flow runs the same training as ``segpipe train`` and passes only paths."""

from models.checkpoint import load_checkpoint
from models.train import read_card

from ..models.train.conftest import easy_scene, write_tif


def test_train_flow_trains_evaluates_and_returns_paths(prefect_server, tmp_path):
    from flows.train_flow import train_flow

    data, test = tmp_path / "data", tmp_path / "test"
    for root, seeds in ((data, range(3)), (test, [7])):
        for i in seeds:
            image, label = easy_scene(i, 96)
            write_tif(root / "images" / f"s{i}.tif", image)
            write_tif(root / "labels" / f"s{i}.tif", label[None], nodata=255)
    out = tmp_path / "model.safetensors"
    options = dict(encoder="resnet18", encoder_depth=3, tile=64, infer_tile=64, overlap=16, batch_size=4,
                   steps_per_epoch=2, epochs=1, warmup_steps=0, val_split=0.34, device="cpu", workers=1,
                   stats_samples=5000)
    state = train_flow(str(data), str(out), test=str(test), options=options, return_state=True)
    assert state.is_completed()
    result = state.result()
    assert result["checkpoint"] == str(out) and result["steps"] == 2
    assert all(isinstance(v, (str, int, float, type(None))) for v in result.values())  # paths, not objects
    assert 0.0 <= result["test_mean_iou"] <= 1.0
    assert load_checkpoint(out).spec.num_classes == 3
    card = read_card(out)
    assert card["test"]["mean_iou"] == result["test_mean_iou"]
