"""build_model: smp networks, local encoder weights only, never a download."""

from __future__ import annotations

import pytest
import torch
import torchvision
from safetensors.torch import save_file

from models.unet import build_model
from pipeline.errors import CheckpointError, ConfigError


@pytest.fixture(scope="module")
def torchvision_resnet18(tmp_path_factory):
    """A torchvision-style resnet18 state dict file (random weights, fc head included)."""
    torch.manual_seed(0)
    state = torchvision.models.resnet18(weights=None).state_dict()
    path = tmp_path_factory.mktemp("weights") / "resnet18_tv.pth"
    torch.save(state, path)
    return path, state


def test_resnet18_forward_has_out_channels():
    model = build_model("Unet", "resnet18", in_channels=2, out_channels=3).eval()
    with torch.inference_mode():
        y = model(torch.randn(1, 2, 64, 64))
    assert y.shape == (1, 3, 64, 64)


@pytest.mark.parametrize("encoder", ["resnet34", "resnet50"])
def test_bigger_encoders_build(encoder):
    model = build_model(encoder=encoder, in_channels=4, out_channels=5)
    assert model.encoder.conv1.in_channels == 4
    assert model.segmentation_head[0].out_channels == 5


def test_imagenet_name_is_refused_without_download(monkeypatch):
    import segmentation_models_pytorch.encoders as enc

    def no_network(*args, **kwargs):  # would mean smp tried the hub
        raise AssertionError("download attempted")

    monkeypatch.setattr(enc, "hf_hub_download", no_network)
    with pytest.raises(CheckpointError, match="never downloads") as info:
        build_model(encoder="resnet18", encoder_weights="imagenet")
    assert "'imagenet'" in str(info.value)
    assert "local" in str(info.value)


def test_local_weights_adapt_first_conv_to_4_channels(torchvision_resnet18):
    path, tv = torchvision_resnet18
    model = build_model(encoder="resnet18", in_channels=4, out_channels=2, encoder_weights=path)
    enc = model.encoder.state_dict()
    assert torch.equal(enc["layer3.1.conv2.weight"], tv["layer3.1.conv2.weight"])
    assert torch.equal(enc["bn1.running_var"], tv["bn1.running_var"])
    # Channels cycle R, G, B, R and are scaled by 3/4, as smp does for its own weights.
    expected = tv["conv1.weight"][:, [0, 1, 2, 0]] * 0.75
    assert torch.allclose(enc["conv1.weight"], expected)


def test_local_weights_one_channel_sums_rgb(tmp_path, torchvision_resnet18):
    _, tv = torchvision_resnet18
    path = tmp_path / "resnet18.safetensors"
    save_file({f"module.{k}": v.contiguous() for k, v in tv.items()}, str(path))  # wrapper prefix too
    model = build_model(encoder="resnet18", in_channels=1, encoder_weights=path)
    assert torch.allclose(model.encoder.conv1.weight, tv["conv1.weight"].sum(1, keepdim=True))


def test_weights_of_another_encoder_name_the_file(torchvision_resnet18):
    path, _ = torchvision_resnet18
    with pytest.raises(CheckpointError, match="do not match") as info:
        build_model(encoder="resnet50", encoder_weights=path)
    assert str(path) in str(info.value)


def test_activation_argument_refused():
    with pytest.raises(ConfigError, match="logits"):
        build_model(encoder="resnet18", activation="softmax2d")


def test_unknown_encoder_is_config_error():
    with pytest.raises(ConfigError, match="resnet999"):
        build_model(encoder="resnet999")
