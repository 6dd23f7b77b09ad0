"""GPU path: same answers as the CPU, bf16 + channels_last, stitching on the device.

Run on a CUDA machine with ``make test-gpu`` (``pytest -m gpu``); skipped elsewhere.
"""

import numpy as np
import pytest
import rasterio
import torch

from pipeline.engine import Predictor
from pipeline.run.geotiff import segment_scene
from pipeline.options import RunOptions

from .conftest import identity_handle

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device"),
]


def test_identity_round_trip_is_exact_on_gpu(make_tif, tmp_path):
    rng = np.random.default_rng(3)
    data = (rng.integers(0, 20000, (3, 700, 650)) * 3 + np.arange(3)[:, None, None]).astype(np.uint16)
    path = make_tif(data)
    # fp32 so the identity scores are exact; bf16 is covered by the agreement test below.
    res = segment_scene(path, identity_handle(tile=128, overlap=32), tmp_path / "out",
                        RunOptions(device="cuda", precision="fp32", confidence=True))
    with rasterio.open(res.outputs["mask"]) as ds:
        np.testing.assert_array_equal(ds.read(1), data.argmax(0))
    assert res.record["facts"]["device"].startswith("cuda")
    assert res.record["facts"]["peak_gpu_mb"] > 0


def test_bf16_channels_last_agrees_with_fp32_cpu(make_tif, tmp_path):
    from models.unet import build_model

    torch.manual_seed(0)
    model = build_model(encoder="resnet18", in_channels=3, out_channels=4).eval()
    x = torch.randn(4, 3, 256, 256)
    h = identity_handle()
    cpu = Predictor(build_model(encoder="resnet18", in_channels=3, out_channels=4).eval(), h.spec,
                    torch.device("cpu"))
    cpu.module.load_state_dict(model.state_dict())
    gpu = Predictor(model, h.spec, torch.device("cuda"))
    assert gpu.precision == "bf16" and gpu.channels_last
    p_cpu = cpu(x)
    p_gpu = gpu(x.cuda()).cpu()
    assert (p_cpu.argmax(1) == p_gpu.argmax(1)).float().mean() > 0.98
    assert (p_cpu - p_gpu).abs().max() < 0.1


def test_oom_splits_the_batch(monkeypatch):
    calls = []

    class Flaky(torch.nn.Module):
        def forward(self, x):
            calls.append(x.shape[0])
            if x.shape[0] > 2:
                raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
            return x * 10

    h = identity_handle()
    pred = Predictor(Flaky(), h.spec, torch.device("cuda"))
    out = pred(torch.rand(8, 3, 32, 32, device="cuda"))
    assert out.shape == (8, 3, 32, 32)
    assert pred.oom_splits == 3 and calls[0] == 8


def test_qa_tallies_on_the_device_equal_the_host():
    """The stitcher's CUDA tallies (QA counts, seams) equal the same tallier run on host arrays."""
    from pipeline.qa.tally import BandTallier

    rng = np.random.default_rng(5)
    labels = rng.integers(0, 4, (3, 300, 257)).astype(np.uint8)
    valid = rng.random((3, 300, 257)) > 0.1
    conf = rng.integers(0, 255, (3, 300, 257)).astype(np.uint8)
    dev, host = BandTallier(4), BandTallier(4)
    for row0, (lab, ok, c) in zip((0, 300, 600), zip(labels, valid, conf)):  # three bands of one plane
        on_gpu = dev(row0, torch.from_numpy(lab).cuda(), torch.from_numpy(ok).cuda(), torch.from_numpy(c).cuda())
        expected = host.host(row0, lab, ok, c)
        for key, value in expected.items():
            np.testing.assert_array_equal(on_gpu[key].cpu().numpy(), value, err_msg=key)
    stacked = BandTallier(4).planes(*(torch.from_numpy(a).cuda() for a in (labels, valid, conf)))
    for j in range(3):
        expected = BandTallier(4).host(0, labels[j], valid[j], conf[j])
        for key, value in expected.items():
            np.testing.assert_array_equal(stacked[key][j].cpu().numpy(), value, err_msg=key)


def test_volume_whole_plane_batches_on_gpu_match_the_cpu():
    """One-tile slices finished a batch at a time on CUDA give the CPU's labels and tallies."""
    from pipeline.engine import Engine, Stitcher, stats_for
    from pipeline.qa.tally import BandTallier
    from pipeline.readers.nifti import VolumeSource
    from pipeline.spec import ModelSpec, Normalization
    from pipeline.threads import StopToken
    from pipeline.tiling import TileGrid

    from .volume.test_engine import _volume

    torch.manual_seed(0)
    net = torch.nn.Conv2d(3, 4, 3, padding=1)
    spec = ModelSpec(3, (1,), tuple("abcd"), context=3, tile=64, overlap=16)
    data = np.random.default_rng(0).normal(size=(9, 40, 48)).astype(np.float32)
    valid = np.ones(data.shape, bool)
    valid[2, 3:9, 4:30] = False
    out = {}
    for device in ("cpu", "cuda"):
        dev = torch.device(device)
        pred = Predictor(net, spec, dev, precision="fp32")
        grid = TileGrid.build(40, 48, 64, 16)
        st = Stitcher(grid, 4, "gaussian", dev, nodata=0, label_dtype=torch.uint8, confidence=True,
                      reducers=[BandTallier(4)])
        eng = Engine(pred, VolumeSource(_volume(data, valid), 3), grid, stats_for(Normalization(), 1), batch_size=4,
                     stitcher=st, stop=StopToken())
        assert eng.lone
        bands = []
        eng.run(lambda pending: bands.extend(pending.resolve()))
        out[device] = bands
    for c, g in zip(out["cpu"], out["cuda"]):
        assert (c.labels == g.labels).mean() > 0.999  # fp32 conv on two devices: rare argmax near-ties
        np.testing.assert_array_equal(c.valid, g.valid)
        assert c.valid_pixels == g.valid_pixels
        np.testing.assert_array_equal(g.tallies["joint"].sum(), c.tallies["joint"].sum())


def test_finished_rows_travel_without_a_host_sync():
    """The stitcher's thread never waits for the GPU: finishing a row (blend, argmax, QA tallies,
    copies to page-locked memory) makes no synchronising call; the writer's resolve() waits."""
    from pipeline.engine import Stitcher
    from pipeline.qa.tally import BandTallier
    from pipeline.tiling import TileGrid

    grid = TileGrid.build(300, 260, 128, 32)
    dev = torch.device("cuda")
    rng = np.random.default_rng(2)
    scores = torch.from_numpy(rng.random((4, 300, 260), dtype=np.float32)).to(dev)

    def run(sync_check: bool):
        st = Stitcher(grid, 4, "gaussian", dev, nodata=255, label_dtype=torch.uint8, confidence=True,
                      reducers=[BandTallier(4)])
        pending = []
        for tile in grid:
            w = tile.window
            probs = torch.zeros((4, grid.read_h, grid.read_w), device=dev)
            probs[:, : w.height, : w.width] = scores[:, w.row_off:w.row_off + w.height, w.col_off:w.col_off + w.width]
            ok = torch.zeros((grid.read_h, grid.read_w), dtype=torch.bool, device=dev)
            ok[: w.height, : w.width] = True
            st.add(0, tile, probs, ok)
            if tile.col == len(grid.col_offsets) - 1:
                if sync_check:
                    torch.cuda.set_sync_debug_mode("error")
                try:
                    pending.append(st.close_strip())
                finally:
                    torch.cuda.set_sync_debug_mode("default")
        return [b for p in pending for b in p.resolve()]

    warm = run(False)  # first use: blend windows, page-locked blocks
    bands = run(True)
    labels = np.concatenate([b.labels for b in bands])
    np.testing.assert_array_equal(labels, np.concatenate([b.labels for b in warm]))
    assert labels.shape == (300, 260)
    expected = scores.argmax(0).cpu().numpy()
    assert (labels == expected).mean() > 0.999  # blended random scores: argmax of the blend ~ of the input


def test_a_batch_goes_through_normalisation_and_the_model_without_a_host_sync():
    """Per-batch work on the main thread queues GPU work only (no copy that drains the stream)."""
    from pipeline.engine.normalize import NormStats, normalise

    def apply_torch(x, stats):
        return normalise(x, stats, 3)

    stats = NormStats("meanstd", (100.0, 200.0, 300.0), (100.0, 50.0, 33.3), (-3.0,) * 3, (3.0,) * 3)
    h = identity_handle()
    pred = Predictor(torch.nn.Conv2d(3, 3, 3, padding=1), h.spec, torch.device("cuda"))
    x = torch.rand(4, 3, 64, 64, device="cuda") * 1000
    expected = pred(apply_torch(x.clone(), stats))  # warm-up: kernels, statistics on the device
    torch.cuda.set_sync_debug_mode("error")
    try:
        got = pred(apply_torch(x.clone(), stats))
    finally:
        torch.cuda.set_sync_debug_mode("default")
    torch.testing.assert_close(got, expected)


@pytest.mark.parametrize("lone", [False, True])
def test_a_block_goes_from_upload_to_finished_bands_without_a_host_sync(lone):
    """The engine loop's per-block work in the thread feeding the model (upload, tiles cut,
    normalise, mask, model, blend or lone-plane finish) queues GPU work only: scenes' strips
    and volumes' whole-plane blocks alike, with invalid pixels (masking, skipped planes)."""
    from pipeline.engine import Engine, Stitcher, stats_for
    from pipeline.engine.upload import Uploader
    from pipeline.qa.tally import BandTallier
    from pipeline.readers.nifti import VolumeSource
    from pipeline.spec import ModelSpec, Normalization
    from pipeline.threads import StopToken
    from pipeline.tiling import TileGrid

    from .volume.test_engine import _volume

    dev = torch.device("cuda")
    shape = (6, 64, 64) if lone else (2, 150, 130)
    data = np.random.default_rng(4).normal(size=shape).astype(np.float32)
    valid = np.ones(shape, bool)
    valid[0, :20, :30] = False
    valid[3 if lone else 1] = False  # a plane without a valid pixel
    spec = ModelSpec(3, (1,), tuple("abcd"), context=3, tile=64, overlap=16)
    pred = Predictor(torch.nn.Conv2d(3, 4, 3, padding=1), spec, dev, precision="fp32")
    grid = TileGrid.build(*shape[1:], 64, 16)
    st = Stitcher(grid, 4, "gaussian", dev, nodata=0, label_dtype=torch.uint8, confidence=True,
                  reducers=[BandTallier(4)])
    eng = Engine(pred, VolumeSource(_volume(data, valid), 3), grid, stats_for(Normalization("zscore", low=0, high=100),
                 1, data[None]), batch_size=4, stitcher=st, stop=StopToken())
    assert eng.lone == lone
    eng.per_block = 4 if lone else 1
    up = Uploader((eng.per_block + 2, 1, grid.read_h, grid.width), np.dtype(np.float32), dev, StopToken())
    blocks = eng._blocks(up)
    pending = []
    for i in range(2):  # the first block warms up (blend windows, statistics, page-locked blocks)
        block = next(blocks)
        units = eng._units(block, up.valid[block.slot])
        if i:
            torch.cuda.set_sync_debug_mode("error")
        try:
            d = up.upload(block)
            (eng._lone_planes if lone else eng._strip)(d, units, pending.append)
        finally:
            torch.cuda.set_sync_debug_mode("default")
    bands = [b for p in pending for b in p.resolve()]
    assert bands and all(b.labels.shape[1] == shape[2] for b in bands)
