"""Finished bands handed over before their copy to the host completes (``Stitcher.close_strip``).

On the CPU a pending band is already on the host; these check that resolving it late, after
the stitcher has moved on and reused its buffers, gives the very band resolving it at once
gives, tallies included. The GPU side (copies queued, no sync) is in test_gpu.py.
"""

from __future__ import annotations

import numpy as np
import torch

from pipeline.qa.tally import BandTallier
from pipeline.engine.bands import Pending
from pipeline.engine.stitch import Stitcher
from pipeline.tiling import TileGrid

K = 3


def _stitch(grid: TileGrid, deferred: bool) -> list:
    rng = np.random.default_rng(0)
    scores = torch.from_numpy(rng.random((K, grid.height, grid.width), dtype=np.float32))
    st = Stitcher(grid, K, "gaussian", torch.device("cpu"), nodata=255, label_dtype=torch.uint8, confidence=True,
                  probabilities=True, reducers=[BandTallier(K)])
    out = []
    for tile in grid:
        w = tile.window
        probs = torch.zeros((K, grid.read_h, grid.read_w))
        probs[:, : w.height, : w.width] = scores[:, w.row_off:w.row_off + w.height, w.col_off:w.col_off + w.width]
        ok = torch.zeros((grid.read_h, grid.read_w), dtype=torch.bool)
        ok[: w.height, : w.width] = True
        ok[:5, :7] = False
        st.add(0, tile, probs, ok)
        if tile.col == len(grid.col_offsets) - 1:
            pending = st.close_strip()
            out.append(pending if deferred else pending.resolve()[0])
    return out


def test_deferred_bands_resolve_to_the_finished_bands():
    grid = TileGrid.build(200, 170, 64, 16)
    now, later = _stitch(grid, False), _stitch(grid, True)
    assert len(now) == len(later) == grid.n_rows
    for a, p in zip(now, later):
        assert isinstance(p, Pending) and p.where == [(0, a.row0)]
        (b,) = p.resolve()
        for name in ("labels", "valid", "confidence", "probabilities"):
            np.testing.assert_array_equal(getattr(b, name), getattr(a, name), err_msg=name)
        assert b.valid_pixels == a.valid_pixels == int(a.valid.sum())
        assert b.entropy_sum == a.entropy_sum
        assert set(b.tallies) == set(a.tallies) == {"joint", "valid", "seam_cols", "seam_rows"}
        for key in a.tallies:
            np.testing.assert_array_equal(b.tallies[key], a.tallies[key], err_msg=key)
    assert sum(b.height for b in now) == grid.height
