"""The batch flow reads the next volume ahead only where it pays: a NIfTI volume on a GPU."""

from __future__ import annotations

import torch

import pipeline.infer
from flows.config import RunOptions
from flows.scenes import read_ahead_next
from pipeline.volume import stream


def test_read_ahead_only_for_volumes_on_a_gpu(tmp_path, monkeypatch):
    from data.synthetic import write_volume

    vol = tmp_path / "ct.nii.gz"
    write_volume(vol, (32, 32, 12))
    try:
        assert not read_ahead_next(vol, RunOptions(device="cpu"))  # the CPU: the model is the bottleneck
        assert stream._AHEAD is None
        monkeypatch.setattr(pipeline.infer, "resolve_device", lambda device: torch.device("cuda"))
        assert not read_ahead_next(tmp_path / "scene.tif", RunOptions())  # not a volume
        assert not read_ahead_next(vol, RunOptions(series="each"))  # a series: read whole
        assert read_ahead_next(vol, RunOptions())
        assert stream.take_read_ahead(vol, None) is not None
    finally:
        stream._AHEAD = None
