"""Checkpoints: one pickle-free .safetensors file that describes itself."""

from __future__ import annotations

import argparse
import hashlib
import json
import struct
import zipfile

import pytest
import torch
from safetensors.torch import load_file, save_file

from models.checkpoint import (
    METADATA_KEY,
    describe,
    file_sha256,
    import_state_dict,
    load_checkpoint,
    read_metadata,
    save_checkpoint,
)
from models.cli import add_model_commands
from models.unet import build_model
from pipeline.errors import CheckpointError, ConfigError
from pipeline.spec import ModelSpec, Normalization

ENCODER = "resnet18"


def tiny_spec(in_channels: int = 3) -> ModelSpec:
    return ModelSpec(
        in_channels=in_channels,
        bands=tuple(range(1, in_channels + 1)),
        class_names=("background", "water", "forest"),
        class_colors=((0, 0, 0), (0, 0, 255), (0, 128, 0)),
        normalization=Normalization(kind="meanstd", mean=(0.1,) * in_channels, std=(0.2,) * in_channels),
        tile=256,
        overlap=32,
    )


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    """A random resnet18 U-Net (3 -> 3) saved once; tests copy or rewrite its file."""
    torch.manual_seed(1)
    model = build_model("Unet", ENCODER, 3, 3).eval()
    path = tmp_path_factory.mktemp("ckpt") / "model.safetensors"
    save_checkpoint(
        model, tiny_spec(), path, arch="Unet", encoder=ENCODER,
        provenance={"source": {"kind": "trained"}, "notes": "unit test"}, training={"epochs": 0},
    )
    return model, path


def rewrite(src, dst, metadata=None, drop=(), reshape=None):
    """Copy a checkpoint's tensors into ``dst`` with other metadata / a broken state dict."""
    state = load_file(str(src))
    for key in drop:
        del state[key]
    if reshape:
        state[reshape] = torch.zeros(7, 7)
    save_file(state, str(dst), metadata=metadata)
    return dst


def segpipe_meta(path) -> dict:
    return json.loads(read_header(path)["__metadata__"][METADATA_KEY])


def read_header(path) -> dict:
    data = path.read_bytes()
    (n,) = struct.unpack("<Q", data[:8])
    return json.loads(data[8:8 + n])


# --- round trip ------------------------------------------------------------------------


def test_round_trip_gives_identical_outputs(saved):
    model, path = saved
    loaded = load_checkpoint(path)
    x = torch.randn(1, 3, 64, 64, generator=torch.Generator().manual_seed(2))
    with torch.inference_mode():
        assert torch.equal(loaded.module(x), model(x))
    assert not loaded.module.training
    assert loaded.spec == tiny_spec()
    assert (loaded.arch, loaded.encoder) == ("Unet", ENCODER)
    assert loaded.sha256 == hashlib.sha256(path.read_bytes()).hexdigest() == file_sha256(path)
    assert loaded.metadata["training"] == {"epochs": 0}
    prov = loaded.metadata["provenance"]
    assert prov["source"] == {"kind": "trained"} and prov["notes"] == "unit test"
    assert prov["created"].endswith("+00:00")


def test_file_is_plain_safetensors_without_pickle(saved):
    _, path = saved
    assert not zipfile.is_zipfile(path)  # torch.save writes a zip holding a pickle
    header = read_header(path)
    (n,) = struct.unpack("<Q", path.read_bytes()[:8])
    tensors = {k: v for k, v in header.items() if k != "__metadata__"}
    # Header + raw tensor bytes account for the whole file: there is room for nothing else.
    assert 8 + n + max(v["data_offsets"][1] for v in tensors.values()) == path.stat().st_size
    assert segpipe_meta(path)["format_version"] == 1
    assert not list(path.parent.glob(".*.tmp"))  # the temporary file was renamed away


def test_save_refuses_weights_that_do_not_fit_the_spec(saved, tmp_path):
    model, _ = saved
    out = tmp_path / "bad.safetensors"
    with pytest.raises(CheckpointError, match="do not match") as info:
        save_checkpoint(model, tiny_spec(in_channels=4), out, arch="Unet", encoder=ENCODER)
    assert str(out) in str(info.value)
    assert not list(tmp_path.iterdir())


# --- load errors: one line, naming the file ---------------------------------------------


def _raises_naming(path, match):
    with pytest.raises(CheckpointError, match=match) as info:
        load_checkpoint(path)
    message = str(info.value)
    assert str(path) in message and "\n" not in message
    return message


def test_missing_file(tmp_path):
    _raises_naming(tmp_path / "nope.safetensors", "not found")


def test_not_safetensors(tmp_path):
    path = tmp_path / "model.bin"
    path.write_bytes(b"\x00\x01junk" * 100)
    _raises_naming(path, "not a readable safetensors")


@pytest.mark.parametrize("zipped", [True, False], ids=["torch-zip", "legacy-pickle"])
def test_pickled_state_dict_says_wrap_it(saved, tmp_path, zipped):
    """A .pth given as --model: told what it is and what to do, not safetensors' 'header too large'."""
    path = tmp_path / "weights.pth"
    torch.save(saved[0].state_dict(), path, _use_new_zipfile_serialization=zipped)
    message = _raises_naming(path, r"this is a pickled state dict .* wrap it with `segpipe model import")
    assert "header too large" not in message and "safetensors file" not in message


def test_weights_digest_is_stored_and_verified(saved):
    from models.integrity import DIGEST_KEY, weights_digest

    meta = segpipe_meta(saved[1])
    assert meta[DIGEST_KEY] == weights_digest(load_file(str(saved[1])))
    assert meta[DIGEST_KEY] == weights_digest(saved[0].state_dict())  # of the weights, not of the file layout
    assert load_checkpoint(saved[1]).weights_verified is True


@pytest.mark.parametrize("where", [0.1, 0.5, 0.999])
def test_flipped_bytes_in_the_weights_are_caught(saved, tmp_path, where):
    data = bytearray(saved[1].read_bytes())
    start = 8 + struct.unpack("<Q", data[:8])[0]  # the weights follow the JSON header
    at = start + int((len(data) - start) * where)
    data[at] ^= 0xFF
    path = tmp_path / "flipped.safetensors"
    path.write_bytes(bytes(data))
    message = _raises_naming(path, "the weights do not match the digest stored in the file")
    assert "corrupt or was altered" in message


def test_checkpoint_without_digest_still_loads_and_says_unverified(saved, tmp_path):
    from models.integrity import DIGEST_KEY

    meta = segpipe_meta(saved[1])
    del meta[DIGEST_KEY]
    path = rewrite(saved[1], tmp_path / "old.safetensors", {METADATA_KEY: json.dumps(meta), "format": "pt"})
    loaded = load_checkpoint(path)
    assert loaded.weights_verified is False
    assert "no digest stored" in describe(loaded) and "cannot be verified" in describe(loaded)
    assert "verified on load" in describe(load_checkpoint(saved[1]))


@pytest.mark.parametrize("mask, mode", [(0o022, 0o644), (0o027, 0o640)])
def test_checkpoint_mode_follows_the_umask(saved, tmp_path, mask, mode):
    import os

    old = os.umask(mask)
    try:
        path = save_checkpoint(saved[0], tiny_spec(), tmp_path / f"m{mask:o}.safetensors", arch="Unet",
                               encoder=ENCODER)
    finally:
        os.umask(old)
    assert path.stat().st_mode & 0o777 == mode


def test_truncated(saved, tmp_path):
    path = tmp_path / "cut.safetensors"
    data = saved[1].read_bytes()
    path.write_bytes(data[: len(data) // 2])
    _raises_naming(path, "not a readable safetensors")


def test_no_segpipe_metadata(saved, tmp_path):
    path = rewrite(saved[1], tmp_path / "plain.safetensors", metadata={"format": "pt"})
    _raises_naming(path, "no 'segpipe' metadata")


def test_unsupported_format_version(saved, tmp_path):
    meta = segpipe_meta(saved[1]) | {"format_version": 2}
    path = rewrite(saved[1], tmp_path / "v2.safetensors", {METADATA_KEY: json.dumps(meta)})
    _raises_naming(path, "format_version 2 is not supported")


def test_malformed_json(saved, tmp_path):
    path = rewrite(saved[1], tmp_path / "json.safetensors", {METADATA_KEY: "{not json"})
    _raises_naming(path, "not valid JSON")


def test_missing_architecture_field(saved, tmp_path):
    meta = segpipe_meta(saved[1])
    del meta["architecture"]["encoder"]
    path = rewrite(saved[1], tmp_path / "arch.safetensors", {METADATA_KEY: json.dumps(meta)})
    assert "architecture.encoder" in _raises_naming(path, "malformed")


def test_invalid_spec(saved, tmp_path):
    meta = segpipe_meta(saved[1])
    meta["spec"]["bands"] = [1, 2]  # 2 bands for 3 input channels
    path = rewrite(saved[1], tmp_path / "spec.safetensors", {METADATA_KEY: json.dumps(meta)})
    _raises_naming(path, "invalid model spec")


@pytest.mark.parametrize(
    ("change", "match"),
    [
        ({"drop": ["decoder.blocks.0.conv1.0.weight"]}, "1 missing.*decoder.blocks.0.conv1.0.weight"),
        ({"reshape": "segmentation_head.0.weight"}, "shape mismatches.*segmentation_head.0.weight"),
    ],
)
def test_weights_do_not_match_architecture(saved, tmp_path, change, match):
    meta = read_header(saved[1])["__metadata__"]
    path = rewrite(saved[1], tmp_path / "weights.safetensors", meta, **change)
    _raises_naming(path, match)


# --- import ------------------------------------------------------------------------------


def test_import_pth_state_dict(saved, tmp_path):
    model, _ = saved
    src = tmp_path / "trained.pth"
    torch.save(model.state_dict(), src)
    out = import_state_dict(src, tmp_path / "imported.safetensors", encoder=ENCODER, in_channels=3, classes=3,
                            class_names=["bg", "a", "b"], mean=[1, 2, 3], std=[4, 5, 6])
    loaded = load_checkpoint(out)
    x = torch.randn(1, 3, 64, 64)
    with torch.inference_mode():
        assert torch.equal(loaded.module(x), model(x))
    spec = loaded.spec
    assert spec.class_names == ("bg", "a", "b") and spec.activation == "softmax"
    assert spec.normalization == Normalization(kind="meanstd", mean=(1.0, 2.0, 3.0), std=(4.0, 5.0, 6.0))
    assert spec.bands == (1, 2, 3) and len(spec.class_colors) == 3
    source = loaded.metadata["provenance"]["source"]
    assert source["kind"] == "imported" and source["file"] == str(src.resolve())
    assert source["sha256"] == hashlib.sha256(src.read_bytes()).hexdigest()


def test_import_strips_module_prefix_and_nesting(saved, tmp_path):
    model, _ = saved
    src = tmp_path / "ddp.pt"
    torch.save({"epoch": 3, "state_dict": {f"module.{k}": v for k, v in model.state_dict().items()}}, src)
    out = import_state_dict(src, tmp_path / "m.safetensors", encoder=ENCODER, in_channels=3, classes=3, scale=1e-4)
    loaded = load_checkpoint(out)
    assert torch.equal(loaded.module.segmentation_head[0].weight, model.segmentation_head[0].weight)
    assert loaded.spec.normalization == Normalization(kind="scale", factor=1e-4)


def test_import_sigmoid_single_class(tmp_path):
    model = build_model(encoder=ENCODER, in_channels=2, out_channels=1)
    src = tmp_path / "binary.pth"
    torch.save(model.state_dict(), src)
    out = import_state_dict(src, tmp_path / "b.safetensors", encoder=ENCODER, in_channels=2, classes=1,
                            class_names=["building"], bands=[3, 4])
    spec = load_checkpoint(out).spec
    assert spec.activation == "sigmoid" and spec.out_channels == 1
    assert spec.class_names == ("background", "building") and spec.bands == (3, 4)


def test_import_wrong_in_channels_names_the_file(saved, tmp_path):
    model, _ = saved
    src = tmp_path / "rgb.pth"
    torch.save(model.state_dict(), src)
    out = tmp_path / "never.safetensors"
    with pytest.raises(CheckpointError, match="shape mismatches.*encoder.conv1.weight") as info:
        import_state_dict(src, out, encoder=ENCODER, in_channels=4, classes=3)
    assert str(src) in str(info.value)
    assert not out.exists()


def test_import_refuses_pickled_code(tmp_path):
    src = tmp_path / "evil.pth"
    torch.save({"w": argparse.Namespace(a=1)}, src)  # an arbitrary object: needs unpickling code
    with pytest.raises(CheckpointError, match="weights-only") as info:
        import_state_dict(src, tmp_path / "x.safetensors", encoder=ENCODER, in_channels=3, classes=2)
    assert str(src) in str(info.value)


# --- describe and CLI ------------------------------------------------------------------


def test_describe_summarises(saved):
    text = describe(load_checkpoint(saved[1]))
    assert "Unet / resnet18" in text and "water" in text and "#0000ff" in text
    assert "meanstd" in text and "tile 256 px, overlap 32 px" in text
    assert file_sha256(saved[1]) in text
    assert "water" in describe(read_metadata(saved[1]))


def run_cli(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="segpipe")
    add_model_commands(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    return args.func(args)


def test_cli_import_then_info_json(saved, tmp_path, capsys):
    src = tmp_path / "w.pth"
    torch.save(saved[0].state_dict(), src)
    out = tmp_path / "cli.safetensors"
    assert run_cli([
        "model", "import", str(src), "--encoder", ENCODER, "--in-channels", "3", "--classes", "3",
        "--class-names", "bg", "road", "roof", "--class-colors", "#000000", "#ff0000", "#00ff00",
        "--tile", "256", "--overlap", "16", "--out", str(out),
    ]) == 0
    line = capsys.readouterr().out.strip()
    assert line == f"{out}  sha256 {file_sha256(out)}"

    assert run_cli(["model", "info", str(out), "--json"]) == 0
    meta = json.loads(capsys.readouterr().out)
    assert meta["spec"]["class_names"] == ["bg", "road", "roof"]
    assert meta["spec"]["class_colors"][1] == [255, 0, 0]
    assert meta["spec"]["tile"] == 256

    assert run_cli(["model", "info", str(out)]) == 0
    assert "roof" in capsys.readouterr().out


def test_import_bad_arguments_are_config_errors_naming_the_file(tmp_path):
    src = tmp_path / "w.pth"
    with pytest.raises(ConfigError, match="tile 500 must be a positive multiple of 32") as info:
        import_state_dict(src, tmp_path / "x.safetensors", in_channels=3, classes=2, tile=500)
    assert str(src) in str(info.value)
    with pytest.raises(ConfigError, match="either mean/std or scale"):
        import_state_dict(src, tmp_path / "x.safetensors", in_channels=3, classes=2, mean=[0], std=[1], scale=2)
