import nibabel as nib
import numpy as np

from models.train import make_config, read_card, train
from models.train.dataset import Pair
from models.train.volumes import volume_normalization, volume_planes
from pipeline.readers.nifti import read_volume, slab


def write_pair(root, name, seed, shape=(32, 32, 8)):
    """A CT-like volume (LPS on disk) with two boxes of known HU and their labels."""
    rng = np.random.default_rng(seed)
    hu = rng.normal(0, 10, shape).astype(np.float32)
    lab = np.zeros(shape, np.uint8)
    lab[4:14, 6:20, :] = 1
    lab[18:28, 18:30, 2:6] = 2
    hu[lab == 1] += 300
    hu[lab == 2] += 700
    affine = np.diag([-1.5, -1.5, 4.0, 1.0])  # LPS: first two axes flipped
    for sub, data in (("images", hu.astype(np.int16)), ("labels", lab)):
        (root / sub).mkdir(parents=True, exist_ok=True)
        nib.save(nib.Nifti1Image(data, affine), root / sub / f"{name}.nii.gz")
    return Pair(root / "images" / f"{name}.nii.gz", root / "labels" / f"{name}.nii.gz")


def test_volume_planes_are_cut_like_the_engine(tmp_path):
    pair = write_pair(tmp_path, "ct", 0)
    norm = volume_normalization("ct_window", (-200.0, 800.0))
    planes = volume_planes(pair, norm, context=3, slice_axis=None)
    vol = read_volume(pair.image)
    assert len(planes) == vol.shape[2]  # coarsest spacing (4 mm) is the slicing axis
    expected = slab(np.clip((vol.data + 200) / 1000, 0, 1), 2, [5], 3)[0]
    np.testing.assert_allclose(planes[5].image, expected, atol=1e-6)
    labels = read_volume(pair.label).data
    np.testing.assert_array_equal(planes[5].label, labels[:, :, 5].astype(np.uint8))


def test_volume_training_end_to_end(tmp_path):
    for i in range(3):
        write_pair(tmp_path / "data", f"ct{i}", i)
    cfg = make_config(data=tmp_path / "data", out=tmp_path / "vol.safetensors", encoder="resnet18", encoder_depth=3,
                      tile=32, infer_tile=32, overlap=8, batch_size=4, steps=2, steps_per_epoch=2, context=3,
                      val_split=0.34, device="cpu", workers=1, class_names=("background", "soft", "dense"))
    result = train(cfg)
    card = read_card(result.checkpoint)
    assert card["data"]["kind"] == "volume" and len(card["data"]["val"]) == 1
    assert card["model"]["spec"]["context"] == 3 and card["model"]["spec"]["normalization"]["kind"] == "ct_window"
    assert set(card["validation"]["per_class"]) == {"background", "soft", "dense"}
