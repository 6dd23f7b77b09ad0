"""``segpipe run`` on scenes: exit codes and one-line errors that name the file."""

import numpy as np
import pytest
import rasterio
import torch
from affine import Affine

from flows.cli import main
from models.checkpoint import save_checkpoint
from models.unet import build_model
from pipeline.spec import ModelSpec


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    torch.manual_seed(0)
    model = build_model(encoder="resnet18", in_channels=3, out_channels=3, encoder_depth=3,
                        decoder_channels=(32, 16, 8))
    spec = ModelSpec(3, (1, 2, 3), ("background", "water", "trees"), tile=64, overlap=16)
    return save_checkpoint(model, spec, tmp_path_factory.mktemp("m") / "m.safetensors", arch="Unet",
                           encoder="resnet18", arch_kwargs={"encoder_depth": 3, "decoder_channels": [32, 16, 8]})


def _scene(path, bands=3, size=96):
    data = np.random.default_rng(0).integers(0, 1000, (bands, size, size)).astype(np.uint16)
    with rasterio.open(path, "w", driver="GTiff", width=size, height=size, count=bands, dtype="uint16",
                       crs="EPSG:32633", transform=Affine(10, 0, 5e5, 0, -10, 6e6)) as ds:
        ds.write(data)
    return path


@pytest.mark.parametrize("precision", ["auto", "fp32"])
def test_run_writes_outputs_and_prints_one_summary_line(tmp_path, ckpt, capsys, precision):
    from pipeline.cpu import choose_precision

    src = _scene(tmp_path / "field.tif")
    rc = main(["run", str(src), "--model", str(ckpt), "--out", str(tmp_path / "out"), "--device", "cpu",
               "--confidence", "--quiet", "--precision", precision])
    out = capsys.readouterr().out.strip().splitlines()
    assert rc == 0
    assert len(out) == 1 and out[0].startswith("field.tif: 96x96 -> ") and "Mpix/s" in out[0]
    used, why = choose_precision(torch.device("cpu"), precision)  # e.g. bf16, auto: CPU has AMX-BF16
    assert f" Mpix/s; {used}, {why})" in out[0], out[0]
    scene = tmp_path / "out" / "field"
    assert sorted(p.name for p in scene.iterdir()) == [
        "field_confidence.tif", "field_mask.qml", "field_mask.tif", "field_mask.tif.aux.xml", "qa.html", "qa.json",
        "record.json"]


@pytest.mark.parametrize("case", ["not_a_raster", "missing_model", "corrupt_model", "wrong_bands", "bad_tile"])
def test_bad_input_is_exit_2_with_one_line_naming_the_file(tmp_path, ckpt, capsys, case):
    src = _scene(tmp_path / "field.tif")
    model = ckpt
    args = []
    if case == "not_a_raster":
        src = tmp_path / "notes.tif"
        src.write_text("not a raster")
        expect = "notes.tif"
    elif case == "missing_model":
        model = tmp_path / "nope.safetensors"
        expect = "nope.safetensors"
    elif case == "corrupt_model":
        model = tmp_path / "broken.safetensors"
        model.write_bytes(ckpt.read_bytes()[:1000])
        expect = "broken.safetensors"
    elif case == "wrong_bands":
        src = _scene(tmp_path / "two.tif", bands=2)
        expect = "two.tif"
    else:
        args = ["--tile", "100"]
        expect = "multiple of 32"
    rc = main(["run", str(src), "--model", str(model), "--out", str(tmp_path / "out"), "--device", "cpu",
               "--quiet", *args])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2
    assert len(err) == 1 and err[0].startswith("segpipe: error: ") and expect in err[0], err
    assert not list((tmp_path / "out").rglob("*.tif")) if (tmp_path / "out").exists() else True


def test_repeated_flags_and_gdal_paths_reach_the_run_options(tmp_path, ckpt, capsys):
    import zipfile

    from flows.cli import build_parser
    from flows.cli_run import options_from_args

    args = build_parser().parse_args([
        "run", "/vsizip//data/s.zip/a.tif", "--model", "m", "--out", "o", "--co", "COMPRESS=ZSTD", "--co",
        "level=9", "--vectors", "--vector-classes", "water", "--vector-classes", "trees"])
    assert args.input == "/vsizip//data/s.zip/a.tif"  # a str: Path() would collapse the //
    opts = options_from_args(args)
    assert opts.co == {"COMPRESS": "ZSTD", "LEVEL": "9"} and opts.vectors and opts.vector_classes == ("water", "trees")

    src = _scene(tmp_path / "field.tif")
    with zipfile.ZipFile(tmp_path / "s.zip", "w") as z:
        z.write(src, "field.tif")
    rc = main(["run", f"/vsizip/{tmp_path}/s.zip/field.tif", "--model", str(ckpt), "--out", str(tmp_path / "out"),
               "--device", "cpu", "--quiet"])
    assert rc == 0 and (tmp_path / "out" / "field" / "field_mask.tif").is_file()
    capsys.readouterr()
    rc = main(["run", str(src), "--model", str(ckpt), "--out", str(tmp_path / "out"), "--co", "COMPRES=ZSTD"])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1 and "COMPRES is not a creation option of GDAL's COG driver" in err[0]
