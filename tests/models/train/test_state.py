"""The training state file (resume): written whole, readable like every other output."""

from __future__ import annotations

import os

import pytest
import torch

from models.train.state import load_state, save_state


@pytest.mark.parametrize("mask, mode", [(0o022, 0o644), (0o027, 0o640)])
def test_state_file_follows_the_umask_and_round_trips(tmp_path, mask, mode):
    model = torch.nn.Conv2d(1, 2, 3)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    model(torch.ones(1, 1, 5, 5)).sum().backward()
    opt.step()
    old = os.umask(mask)
    try:
        path = save_state(tmp_path / "run.state.safetensors", model, opt, {"step": 7, "epoch": 1})
    finally:
        os.umask(old)
    assert path.stat().st_mode & 0o777 == mode  # safetensors alone writes 0600
    assert load_state(path).step == 7
    assert [p.name for p in tmp_path.iterdir()] == ["run.state.safetensors"]  # no temporary left
