import nibabel as nib
import numpy as np
import pytest
from affine import Affine

from models.train import find_pairs
from models.train.dataset import Pair, check_scene_pair, check_volume_pair, read_scene_pair
from pipeline.errors import InputError

from .conftest import TRANSFORM, write_tif


def test_folder_and_manifest_pairs(scene_data, tmp_path):
    root = scene_data(2, 64)
    pairs = find_pairs(root)
    assert [p.name for p in pairs] == ["s0", "s1"]
    assert pairs[0].label == root / "labels" / "s0.tif"
    manifest = root / "list.csv"
    manifest.write_text("image,label,split\nimages/s0.tif,labels/s0.tif,train\nimages/s1.tif,labels/s1.tif,val\n")
    listed = find_pairs(manifest)
    assert [(p.image, p.split) for p in listed] == [(root / "images/s0.tif", "train"), (root / "images/s1.tif", "val")]


def test_image_without_label_is_named(scene_data):
    root = scene_data(1, 64)
    (root / "labels" / "s0.tif").unlink()
    with pytest.raises(InputError, match="s0.tif"):
        find_pairs(root)


@pytest.mark.parametrize("change", ["size", "transform", "crs"])
def test_mismatched_scene_pair_names_both_files(tmp_path, change):
    image = write_tif(tmp_path / "img.tif", np.ones((2, 64, 64), np.uint16))
    kw = {"transform": TRANSFORM, "crs": "EPSG:32633"}
    shape = (1, 64, 64)
    if change == "size":
        shape = (1, 64, 60)
    elif change == "transform":
        kw["transform"] = Affine(10, 0, 500010, 0, -10, 6000000)
    else:
        kw["crs"] = "EPSG:32632"
    label = write_tif(tmp_path / "lab.tif", np.zeros(shape, np.uint8), **kw)
    with pytest.raises(InputError) as err:
        check_scene_pair(Pair(image, label))
    msg = str(err.value)
    assert "img.tif" in msg and "lab.tif" in msg and {"size": "size", "transform": "transform", "crs": "CRS"}[change] in msg


def test_mismatched_volume_pair_names_both_files(tmp_path):
    img = nib.Nifti1Image(np.zeros((8, 8, 4), np.int16), np.diag([1.0, 1.0, 2.0, 1.0]))
    lab = nib.Nifti1Image(np.zeros((8, 8, 4), np.uint8), np.diag([1.0, 1.0, 3.0, 1.0]))
    nib.save(img, tmp_path / "ct.nii.gz")
    nib.save(lab, tmp_path / "ct_labels.nii.gz")
    with pytest.raises(InputError, match=r"ct_labels\.nii\.gz.*ct\.nii\.gz.*affine"):
        check_volume_pair(Pair(tmp_path / "ct.nii.gz", tmp_path / "ct_labels.nii.gz"))


def test_image_nodata_becomes_ignore(tmp_path):
    data = np.full((1, 32, 32), 7, np.uint16)
    data[0, :, :4] = 0
    image = write_tif(tmp_path / "img.tif", data, nodata=0)
    label = write_tif(tmp_path / "lab.tif", np.ones((1, 32, 32), np.uint8))
    scene = read_scene_pair(Pair(image, label))
    assert (scene.label[:, :4] == 255).all() and (scene.label[:, 4:] == 1).all()
    assert not scene.valid[:, :4].any()


def test_a_training_manifest_takes_gdal_paths(scene_data, tmp_path):
    import zipfile

    root = scene_data(2)
    archive = tmp_path / "train.zip"
    with zipfile.ZipFile(archive, "w") as z:
        for sub in ("images", "labels"):
            z.write(root / sub / "s0.tif", f"{sub}/s0.tif")
    manifest = tmp_path / "pairs.csv"
    manifest.write_text(f"image,label\n/vsizip/{archive}/images/s0.tif,/vsizip/{archive}/labels/s0.tif\n"
                        "images/s1.tif,labels/s1.tif\n")
    (tmp_path / "images").symlink_to(root / "images")
    (tmp_path / "labels").symlink_to(root / "labels")
    remote, local = find_pairs(manifest)
    assert remote.image == f"/vsizip/{archive}/images/s0.tif" and remote.name == "s0" and remote.kind == "scene"
    assert local.image == tmp_path / "images" / "s1.tif"
    check_scene_pair(remote)
    got, want = read_scene_pair(remote), read_scene_pair(find_pairs(root)[0])
    np.testing.assert_array_equal(got.image, want.image)
    np.testing.assert_array_equal(got.label, want.label)
