"""What would fail every scene is refused once, up front: one line, exit 2, nothing run or retried."""

from __future__ import annotations

import os
import subprocess

import pytest

from .conftest import child_env, segpipe_cmd


def _batch(prefect_server, *args, timeout=300):
    return subprocess.run([*segpipe_cmd(), "batch", *map(str, args), "--quiet"], env=child_env(prefect_server),
                          capture_output=True, text=True, timeout=timeout)


@pytest.fixture
def scenes(tmp_path):
    from data.synthetic import write_scene

    folder = tmp_path / "in"
    folder.mkdir()
    for i in range(2):
        write_scene(folder / f"s{i}.tif", 64, 64, bands=1, seed=i)
    return folder


def _one_error_line(proc, needle):
    lines = [ln for ln in proc.stderr.splitlines() if ln.startswith("segpipe: error:")]
    assert proc.returncode == 2 and len(lines) == 1 and needle in lines[0], proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr


def test_a_missing_corrupt_or_pickled_model_stops_the_batch_before_any_scene(prefect_server, scenes, tmp_path):
    import torch

    out = tmp_path / "out"
    _one_error_line(_batch(prefect_server, scenes, "--model", tmp_path / "nope.safetensors", "--out", out),
                    "nope.safetensors: checkpoint file not found")
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"\x00" * 100)
    _one_error_line(_batch(prefect_server, scenes, "--model", bad, "--out", out), "bad.safetensors")
    pickled = tmp_path / "weights.pth"
    torch.save({"w": torch.zeros(2)}, pickled)
    _one_error_line(_batch(prefect_server, scenes, "--model", pickled, "--out", out), "segpipe model import")
    assert not list(out.glob("s*")) and not (out / "run_report.html").exists()  # no scene folder, no error files


def test_a_volume_checkpoint_for_scenes_is_refused_naming_both(prefect_server, scenes, tmp_path):
    from models.checkpoint import save_checkpoint
    from models.unet import build_model
    from pipeline.spec import ModelSpec

    net = build_model("Unet", "resnet18", 3, 2, decoder_channels=(16, 16, 16, 16, 16))
    ct = save_checkpoint(net, ModelSpec(3, (1,), ("bg", "organ"), context=3, tile=64, overlap=16),
                         tmp_path / "ct.safetensors", arch="Unet", encoder="resnet18",
                         arch_kwargs={"decoder_channels": (16, 16, 16, 16, 16)})
    _one_error_line(_batch(prefect_server, scenes, "--model", ct, "--out", tmp_path / "out"),
                    "ct.safetensors: a volume checkpoint (2.5D context 3) given the raster scene")


def test_a_read_only_output_or_unreadable_input_folder_is_one_line_not_retries(prefect_server, make_checkpoint,
                                                                                 scenes, tmp_path):
    if os.geteuid() == 0:  # root ignores permissions; a file where the folder should be is refused the same way
        blocker = tmp_path / "out"
        blocker.write_text("a file, not a folder")
        proc = _batch(prefect_server, scenes, "--model", make_checkpoint(0), "--out", blocker)
        _one_error_line(proc, "out: output folder is not writable")
        return
    ro = tmp_path / "ro"
    ro.mkdir(mode=0o500)
    _one_error_line(_batch(prefect_server, scenes, "--model", make_checkpoint(0), "--out", ro),
                    "ro: output folder is not writable")
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o000)
    _one_error_line(_batch(prefect_server, locked, "--model", make_checkpoint(0), "--out", tmp_path / "o"),
                    "locked: input folder cannot be read")


def test_broken_links_in_an_input_folder_fail_their_scene_loudly(prefect_server, make_checkpoint, scenes, tmp_path):
    (scenes / "gone.tif").symlink_to(tmp_path / "nowhere.tif")
    (scenes / "loop.tif").symlink_to(scenes / "loop.tif")
    proc = _batch(prefect_server, scenes, "--model", make_checkpoint(0), "--out", tmp_path / "out")
    assert proc.returncode == 3, proc.stderr[-3000:]  # the two good scenes are done, the links' scenes failed
    assert "gone" in proc.stderr and "loop" in proc.stderr
    assert (tmp_path / "out" / "s0" / "record.json").is_file()
