"""The batch flow reads the next volume ahead only where it pays: a NIfTI volume on a GPU."""

from __future__ import annotations

import torch

import pipeline.engine
from flows.config import RunOptions
from flows.scenes import read_ahead_next
from pipeline.readers.nifti import ReadAhead


def test_read_ahead_only_for_volumes_on_a_gpu(tmp_path, monkeypatch):
    from data.synthetic import write_volume

    vol = tmp_path / "ct.nii.gz"
    write_volume(vol, (32, 32, 12))
    ahead = ReadAhead()
    try:
        assert not read_ahead_next(ahead, vol, RunOptions(device="cpu"))  # the CPU: the model is the bottleneck
        assert ahead._slot is None
        monkeypatch.setattr(pipeline.engine, "resolve_device", lambda device: torch.device("cuda"))
        assert not read_ahead_next(ahead, tmp_path / "scene.tif", RunOptions())  # not a volume
        assert not read_ahead_next(ahead, vol, RunOptions(series="each"))  # a series: read whole
        assert read_ahead_next(ahead, vol, RunOptions())
        assert ahead.take(vol, None) is not None
    finally:
        ahead.close()
