"""Tiled, blended, streamed inference agrees with one whole-image pass of a real U-Net."""

import numpy as np
import pytest
import rasterio
import scipy.ndimage as ndi
import torch

from models.unet import build_model
from pipeline.run.geotiff import segment_scene
from pipeline.options import RunOptions
from pipeline.spec import ModelSpec

from .conftest import Handle


@pytest.fixture(scope="module")
def small_unet():
    torch.manual_seed(0)
    # ResNet-18 encoder cut at depth 3: receptive field ~145 px (exact beyond 72 px from a tile edge).
    m = build_model(encoder="resnet18", in_channels=3, out_channels=4, encoder_depth=3,
                    decoder_channels=(64, 32, 16)).eval()
    with torch.no_grad():
        # Random-init logits are ~0.1: argmax would be decided by float noise. A trained model is
        # decisive; scaling the head gives the random one the same decisiveness.
        m.segmentation_head[0].weight.mul_(20)
    return m


@pytest.mark.parametrize("blend", ["gaussian", "hann", "constant"])
def test_tiled_matches_whole_image_with_overlap_of_receptive_field(make_tif, tmp_path, small_unet, blend):
    rng = np.random.default_rng(0)
    h, w = 352, 416
    data = np.stack([ndi.gaussian_filter(rng.standard_normal((h, w)), 4) * 3 for _ in range(3)]).astype(np.float32)
    path = make_tif(data)
    with torch.inference_mode():
        whole = small_unet(torch.from_numpy(data)[None]).argmax(1)[0].numpy()
    spec = ModelSpec(3, (1, 2, 3), ("a", "b", "c", "d"), tile=192, overlap=160)
    # fp32, as the whole-image reference: this checks tiling and blending, not bf16 (tests/models/train/test_bf16.py).
    settings = RunOptions(device="cpu", blend=blend, precision="fp32")
    res = segment_scene(path, Handle(small_unet, spec), tmp_path / "out", settings)
    with rasterio.open(res.outputs["mask"]) as ds:
        tiled = ds.read(1)
    assert len(np.unique(whole)) >= 2  # a non-trivial map
    agree = (tiled == whole).mean()
    assert agree >= 0.999, agree
