import json

from flows.cli import main
from models.train import card_paths


def test_segpipe_train_writes_checkpoint_state_and_card(scene_data, tmp_path, capsys):
    data = scene_data(3, 64)
    out = tmp_path / "cli.safetensors"
    rc = main(["train", "--data", str(data), "--out", str(out), "--encoder", "resnet18", "--depth", "3",
               "--tile", "64", "--infer-tile", "64", "--overlap", "16", "--steps", "1", "--steps-per-epoch", "1",
               "--batch-size", "2", "--device", "cpu", "--class-names", "bg", "a", "b", "--quiet"])
    assert rc == 0
    assert out.is_file() and out.with_name("cli.state.safetensors").is_file()
    card = json.loads(card_paths(out)[1].read_text())
    assert card["model"]["spec"]["class_names"] == ["bg", "a", "b"]
    assert "best validation mean IoU" in capsys.readouterr().out


def test_segpipe_train_bad_setting_is_one_line(scene_data, tmp_path, capsys):
    rc = main(["train", "--data", str(scene_data(1, 64)), "--out", str(tmp_path / "m.safetensors"), "--tile", "100"])
    assert rc == 2
    assert "tile" in capsys.readouterr().err
