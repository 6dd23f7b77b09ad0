"""segment_volume end to end: identity round trips, header fidelity, series policies, bad input, CLI."""

from __future__ import annotations

import json

import nibabel as nib
import numpy as np
import pytest
import torch

from pipeline.errors import CheckpointError, ConfigError, InputError, SegpipeWarning
from pipeline.qa import QAThresholds
from pipeline.run.record import RECORD_NAME
from pipeline.options import RunOptions
from pipeline.spec import ModelSpec, Normalization
from pipeline.readers.nifti import read_volume
from pipeline.run.nifti import segment_volume

from ..conftest import Handle
from .conftest import GEOMETRIES, _perm, affine_from, write_nifti
from .test_write import assert_same_geometry

SHAPE = (40, 48, 12)  # on disk; zooms (0.7, 0.8, 2.5): 12 slices of 40 x 48, tiled 2 x 2 by 32 px tiles
THRESHOLD = 300.5  # between integers: no ties after any float32 normalisation
NAMES = ("background", "bright")
RAI = _perm([(0, 1), (1, 1), (2, -1)])  # slice axis flipped on disk: "lowest index" must be canonical


class Threshold(torch.nn.Module):
    """Stand-in 2.5D model: class 1 where channel ``channel`` (default: the centre) exceeds ``threshold``."""

    def __init__(self, context: int, threshold: float, channel: int | None = None) -> None:
        super().__init__()
        self.channel = context // 2 if channel is None else channel
        self.threshold = threshold

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        on = (x[:, self.channel: self.channel + 1] > self.threshold).float()
        fg = 20.0 * on - 10.0
        return torch.cat([-fg, fg], dim=1)


def handle(context: int = 1, *, norm: Normalization = Normalization(), threshold: float = THRESHOLD,
           channel: int | None = None, tile: int = 32, overlap: int = 8, **spec_kw) -> Handle:
    spec = ModelSpec(context, (1,), NAMES, context=context, tile=tile, overlap=overlap, normalization=norm, **spec_kw)
    return Handle(Threshold(context, threshold, channel), spec)


CPU = dict(device="cpu", batch_size=5)


@pytest.fixture(autouse=True, scope="module")
def one_torch_thread():
    """Tiny tensors: on a shared, loaded 2-core machine every OpenMP barrier of torch's
    intra-op pool costs a scheduler slice (~15 ms per op); one thread keeps these tests fast."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture(scope="module")
def volume_data() -> np.ndarray:
    return np.random.default_rng(11).integers(-200, 800, size=SHAPE, dtype=np.int16)


def make(tmp_path, data, geometry="lps", name="ct.nii.gz", **kw):
    qform, sform = GEOMETRIES[geometry] if isinstance(geometry, str) else (geometry, geometry)
    return write_nifti(tmp_path / name, data, qform=qform, sform=sform, **kw)


def labels_of(path) -> np.ndarray:
    img = nib.load(str(path))
    assert img.get_data_dtype() == np.uint8
    return np.asarray(img.dataobj)


@pytest.mark.parametrize("blend", ["gaussian", "hann", "constant"])
@pytest.mark.parametrize("context", [1, 3])
@pytest.mark.parametrize("geometry", ["ras", "lps", "psr", "oblique", "sheared"])
def test_identity_round_trip(tmp_path, volume_data, geometry, context, blend):
    src = make(tmp_path, volume_data, geometry)
    res = segment_volume(src, handle(context), tmp_path / "out", RunOptions(blend=blend, **CPU))
    expected = (nib.load(str(src)).get_fdata() > THRESHOLD).astype(np.uint8)  # on-disk order
    assert 0 < expected.sum() < expected.size
    np.testing.assert_array_equal(labels_of(res.outputs["labels"]), expected)
    assert_same_geometry(res.outputs["labels"], src)
    rec = res.record
    assert rec["facts"]["tiles_per_slice"] == 4 and rec["facts"]["slices_total"] == 12
    assert rec["facts"]["plane_shape"] in ([40, 48], [48, 40])


def test_context_channel_zero_is_the_lower_canonical_neighbour(tmp_path, volume_data):
    src = make(tmp_path, volume_data, affine_from(RAI))
    res = segment_volume(src, handle(3, channel=0), tmp_path / "out", RunOptions(**CPU))
    vol = read_volume(src)
    axis = vol.slice_axis
    idx = np.clip(np.arange(vol.shape[axis]) - 1, 0, None)
    expected = vol.orientation.to_source(np.take(vol.data, idx, axis=axis) > THRESHOLD).astype(np.uint8)
    np.testing.assert_array_equal(labels_of(res.outputs["labels"]), expected)
    assert not np.array_equal(expected, nib.load(str(src)).get_fdata() > THRESHOLD)


def test_normalisation_is_applied_and_recorded(tmp_path, volume_data):
    src = make(tmp_path, volume_data, "psr", slope=0.5, inter=-100.0)
    norm = Normalization(kind="ct_window", window_low=-200.0, window_high=200.0)
    real = THRESHOLD * 0.5 - 100.0  # stored values through scl_slope/scl_inter (= 50.25)
    res = segment_volume(src, handle(3, norm=norm, threshold=(real + 200.0) / 400.0), tmp_path / "out",
                         RunOptions(**CPU))
    expected = (nib.load(str(src)).get_fdata() > real).astype(np.uint8)
    np.testing.assert_array_equal(labels_of(res.outputs["labels"]), expected)
    stats = res.record["facts"]["normalization"]
    assert stats["kind"] == "ct_window" and stats["offset"] == -200.0 and stats["divisor"] == 400.0


def test_outputs_header_sidecars_and_record(tmp_path, volume_data):
    qform, sform = GEOMETRIES["q1_s2_differ"]
    src = write_nifti(tmp_path / "scan.nii.gz", volume_data, qform=qform, sform=sform, qform_code=1, sform_code=2)
    seen = []
    res = segment_volume(src, handle(3), tmp_path / "out", RunOptions(confidence=True, probabilities=True, **CPU),
                         observers=[lambda b: seen.append((b.plane, b.labels.shape, b.valid.dtype, b.confidence.dtype))])
    d = res.scene_dir
    assert d == tmp_path / "out" / "scan"
    names = {"labels": "scan_labels.nii.gz", "confidence": "scan_confidence.nii.gz",
             "probability_background": "scan_probability_background.nii.gz",
             "probability_bright": "scan_probability_bright.nii.gz"}
    assert {k: p.name for k, p in res.outputs.items()} == names
    for p in res.outputs.values():
        assert_same_geometry(p, src)
        hdr = nib.load(str(p)).header
        assert (int(hdr["qform_code"]), int(hdr["sform_code"])) == (1, 2)
    assert json.loads((d / "scan_labels.labels.json").read_text())["labels"][1]["name"] == "bright"
    assert (d / "scan_labels.ctbl").exists() and (d / "scan_labels.itksnap.txt").exists()
    labels = labels_of(res.outputs["labels"])
    p_bright = np.asarray(nib.load(str(res.outputs["probability_bright"])).dataobj)
    np.testing.assert_array_equal(p_bright > 127, labels == 1)
    assert np.asarray(nib.load(str(res.outputs["confidence"])).dataobj).min() >= 250
    assert [s[0] for s in seen] == list(range(12)) and seen[0][2:] == (np.dtype(bool), np.dtype(np.uint8))
    rec = json.loads((d / RECORD_NAME).read_text())
    assert rec["status"] == "complete" and rec["kind"] == "volume"
    assert rec["outputs"] == names
    inp = rec["input"]
    assert inp["shape"] == list(SHAPE) and inp["zooms"] == pytest.approx([0.7, 0.8, 2.5])
    assert (inp["width"], inp["height"], inp["depth"]) == SHAPE and inp["n_invalid"] == 0
    assert inp["dtype"] == "int16" and len(inp["sha256"]) == 64 and inp["series_note"] == ""
    lv = rec["facts"]["label_volumes"]
    assert lv["voxel_volume_mm3"] == pytest.approx(0.7 * 0.8 * 2.5, rel=1e-5)
    bright = lv["labels"][1]
    assert bright["name"] == "bright" and bright["voxels"] == int(labels.sum())
    assert bright["volume_ml"] == pytest.approx(labels.sum() * 0.7 * 0.8 * 2.5 / 1000, rel=1e-5)
    t = rec["timings"]
    assert t["total_s"] > 0 and t["slices_per_s"] > 0 and t["mpix_per_s"] > 0
    assert rec["fingerprint"] == RunOptions(confidence=True, probabilities=True, **CPU).resolved(
        handle(3).spec).fingerprint()
    assert not list(d.glob(".*")), "temporary files left behind"


def test_nan_voxels_are_label_zero_and_reported(tmp_path, volume_data):
    data = volume_data.astype(np.float32)
    data[5:9, 10:20, 3] = np.nan
    data[0, 0, 0] = np.inf
    src = make(tmp_path, data, "lps")
    progress = []
    with pytest.warns(SegpipeWarning, match="labelled 0"), pytest.warns(SegpipeWarning, match="out of statistics"):
        res = segment_volume(src, handle(3), tmp_path / "out", RunOptions(confidence=True, **CPU),
                             progress=progress.append)
    bad = ~np.isfinite(data)
    labels = labels_of(res.outputs["labels"])
    assert (labels[bad] == 0).all()
    np.testing.assert_array_equal(labels[~bad], (data[~bad] > THRESHOLD).astype(np.uint8))
    conf = np.asarray(nib.load(str(res.outputs["confidence"])).dataobj)
    assert (conf[bad] == 255).all() and (conf[~bad] < 255).all()
    assert res.record["input"]["n_invalid"] == int(bad.sum()) == 41
    assert res.record["facts"]["valid_voxels"] == data.size - 41
    assert any("NaN/Inf" in w for w in res.record["warnings"])
    assert progress[-1].tiles_done == progress[-1].tiles_total == 12 and progress[-1].width == 40 * 48


def test_4d_series_policies(tmp_path, nibabel_data):
    src = nibabel_data / "example4d.nii.gz"  # (128, 96, 24, 2)
    model = handle(1, threshold=float(np.median(nib.load(str(src)).get_fdata())), tile=64, overlap=16)
    out = tmp_path / "out"
    with pytest.raises(InputError, match="example4d.nii.gz.*--volume N"):
        segment_volume(src, model, out, RunOptions(**CPU))
    assert not out.exists(), "bad input must fail before any output exists"

    res = segment_volume(src, model, out, RunOptions(series=1, **CPU))
    data = nib.load(str(src)).get_fdata()
    np.testing.assert_array_equal(labels_of(res.outputs["labels"]), data[..., 1] > model.module.threshold)
    assert "volume 1 selected" in res.record["input"]["series_note"]
    assert labels_of(res.outputs["labels"]).shape == (128, 96, 24)

    res = segment_volume(src, model, out, RunOptions(series="each", **CPU))
    assert sorted(res.outputs) == ["t0_labels", "t1_labels"]
    assert res.outputs["t1_labels"].name == "example4d_t1_labels.nii.gz"
    for t in (0, 1):
        np.testing.assert_array_equal(labels_of(res.outputs[f"t{t}_labels"]), data[..., t] > model.module.threshold)
    vols = res.record["facts"]["volumes"]
    assert [v["index"] for v in vols] == [0, 1] and "--series each" in vols[1]["series_note"]
    assert res.record["facts"]["slices_total"] == 48 and "label_volumes" not in res.record["facts"]


@pytest.mark.parametrize("name,series", [("anatomical.nii", "error"), ("reoriented_anat_moved.nii", "error"),
                                         ("example_nifti2.nii.gz", 0)])
def test_nibabel_volumes_end_to_end(tmp_path, nibabel_data, name, series):
    src = nibabel_data / name
    data = nib.load(str(src)).get_fdata()
    data = data[..., series] if data.ndim == 4 else data
    thr = float(np.median(data)) + 0.25
    res = segment_volume(src, handle(3, threshold=thr), tmp_path / "out", RunOptions(series=series, **CPU))
    np.testing.assert_array_equal(labels_of(res.outputs["labels"]), data > thr)
    assert_same_geometry(res.outputs["labels"], src)
    assert res.record["input"]["nifti_version"] == (2 if "nifti2" in name else 1)


def test_model_and_settings_mismatches(tmp_path, volume_data):
    src = make(tmp_path, volume_data)
    out = tmp_path / "out"
    with pytest.raises(ConfigError, match=r"--context 5 does not match .*context 3"):
        segment_volume(src, handle(3), out, RunOptions(context=5, **CPU))
    rgb = Handle(Threshold(3, THRESHOLD), ModelSpec(3, (1, 2, 3), NAMES, tile=32, overlap=8))
    with pytest.raises(CheckpointError, match=r"bands \[1, 2, 3\].*single-channel"):
        segment_volume(src, rgb, out, RunOptions(**CPU))
    assert not out.exists()
    assert segment_volume(src, handle(3), out, RunOptions(context=3, **CPU)).record["facts"]["context"] == 3


def test_failure_midway_leaves_no_finished_looking_output(tmp_path, volume_data, monkeypatch):
    src = make(tmp_path, volume_data)
    model = handle(1)
    calls = []

    def fail_late(x):
        calls.append(1)
        if len(calls) == 3:
            raise RuntimeError("device fell over")
        return Threshold.forward(model.module, x)

    model.module.forward = fail_late
    with pytest.raises(RuntimeError, match="fell over"):
        segment_volume(src, model, tmp_path / "a", RunOptions(**CPU))
    assert not (tmp_path / "a" / "ct").exists()  # nothing that could look finished
    assert not list((tmp_path / "a" / ".segpipe" / "staging").iterdir())

    from pipeline.sinks.nifti import volume as run_mod  # where the volumes are written

    real = run_mod.write_label_volume

    def fail_confidence(path, data, vol, **kw):
        if kw["kind"] == "confidence":
            raise OSError("disk full")
        return real(path, data, vol, **kw)

    monkeypatch.setattr(run_mod, "write_label_volume", fail_confidence)
    good = segment_volume(src, handle(1), tmp_path / "b", RunOptions(**CPU))  # an earlier complete run
    before = {p.name: p.read_bytes() for p in good.scene_dir.iterdir()}
    with pytest.raises(OSError, match="disk full"):
        segment_volume(src, handle(1), tmp_path / "b", RunOptions(confidence=True, **CPU))
    after = {p.name: p.read_bytes() for p in good.scene_dir.iterdir()}
    assert after == before, "the earlier complete run is left exactly as it was"
    assert not list((tmp_path / "b" / ".segpipe" / "staging").iterdir()), "the failed run's labels removed"


def test_cli_run_with_smp_checkpoint(tmp_path, volume_data):
    from flows.cli import main
    from models.checkpoint import save_checkpoint
    from models.unet import build_model

    torch.manual_seed(0)
    kw = dict(encoder_depth=3, decoder_channels=(32, 16, 8))
    net = build_model(encoder="resnet18", in_channels=3, out_channels=4, **kw)
    spec = ModelSpec(3, (1,), ("background", "liver", "kidney", "spleen"), context=3, tile=32, overlap=8,
                     normalization=Normalization(kind="ct_window", window_low=-200, window_high=800))
    ckpt = save_checkpoint(net, spec, tmp_path / "tiny.safetensors", arch="Unet", encoder="resnet18", arch_kwargs=kw)
    src = make(tmp_path, volume_data, "oblique", name="ct_scan.nii.gz")
    rc = main(["run", str(src), "--model", str(ckpt), "--out", str(tmp_path / "out"), "--slice-axis", "2",
               "--context", "3", "--device", "cpu", "--quiet", "--confidence"])
    assert rc == 0
    d = tmp_path / "out" / "ct_scan"
    rec = json.loads((d / RECORD_NAME).read_text())
    assert rec["facts"]["slice_axis"] == 2 and rec["settings"]["slice_axis"] == 2
    labels = labels_of(d / "ct_scan_labels.nii.gz")
    assert labels.shape == SHAPE and labels.max() <= 3
    assert_same_geometry(d / "ct_scan_confidence.nii.gz", src)
    assert main(["run", str(src), "--model", str(ckpt), "--out", str(tmp_path / "out"), "--context", "5",
                 "--device", "cpu", "--quiet"]) == 2


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_identity_round_trip_on_gpu(tmp_path, volume_data):
    src = make(tmp_path, volume_data, "oblique")
    # fp32: the stand-in's scores are exact; the channel gather, tiles and stitching run on the device.
    res = segment_volume(src, handle(3), tmp_path / "out",
                         RunOptions(device="cuda", precision="fp32", batch_size=7, confidence=True))
    expected = (nib.load(str(src)).get_fdata() > THRESHOLD).astype(np.uint8)
    np.testing.assert_array_equal(labels_of(res.outputs["labels"]), expected)
    assert res.record["facts"]["device"].startswith("cuda") and res.record["facts"]["peak_gpu_mb"] > 0


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_bf16_gpu_agrees_with_fp32_cpu(tmp_path):
    from data.synthetic import write_volume
    from models.unet import build_model

    src = tmp_path / "ct.nii.gz"
    write_volume(src, (96, 80, 20), spacing=(0.8, 0.8, 2.5), orientation="LPS", seed=3)
    torch.manual_seed(0)
    net = build_model(encoder="resnet18", in_channels=3, out_channels=4).eval()
    spec = ModelSpec(3, (1,), ("background", "body", "organ", "bone"), context=3, tile=64, overlap=16,
                     normalization=Normalization(kind="ct_window", window_low=-200, window_high=300))
    cpu = segment_volume(src, Handle(net, spec), tmp_path / "cpu", RunOptions(device="cpu", precision="fp32"))
    gpu = segment_volume(src, Handle(net, spec), tmp_path / "gpu", RunOptions(device="cuda"))
    a, b = labels_of(cpu.outputs["labels"]), labels_of(gpu.outputs["labels"])
    assert gpu.record["facts"]["precision"] == "bf16"
    assert (a == b).mean() > 0.98


def test_volume_qa_report_with_ml_and_header_check(tmp_path, volume_data):
    src = make(tmp_path, volume_data, "oblique")
    res = segment_volume(src, handle(1), tmp_path / "out", RunOptions(**CPU))
    qa = json.loads((res.scene_dir / "qa.json").read_text())
    labels = labels_of(res.outputs["labels"])
    bright = next(c for c in qa["classes"] if c["name"] == "bright")
    assert bright["pixels"] == int(labels.sum())
    zooms = nib.load(str(src)).header.get_zooms()[:3]
    assert bright["volume_ml"] == pytest.approx(labels.sum() * float(np.prod(zooms)) / 1000, rel=1e-5)
    checks = {c["name"]: c["status"] for c in qa["checks"]}
    assert checks["nifti_header"] == "pass" and checks["complete"] == "pass"
    assert res.record["qa"]["verdict"] in ("pass", "warn")
    html = (res.scene_dir / "qa.html").read_text()
    assert "axial" in html and "sagittal" in html and "coronal" in html


def test_a_series_gets_a_qa_report_per_volume_and_its_worst_as_qa_json(tmp_path, volume_data):
    # volume 1 is empty of the bright class and volume 0 is mostly bright: their reports differ
    series = np.stack([volume_data, np.full_like(volume_data, -100)], axis=-1)
    src = make(tmp_path, series, "lps", name="dyn.nii.gz")
    thresholds = QAThresholds(no_foreground="fail")  # volume 1 fails, volume 0 does not
    res = segment_volume(src, handle(1), tmp_path / "out", RunOptions(series="each", **CPU),
                         qa_thresholds=thresholds)
    d = res.scene_dir
    assert {p.name for p in d.glob("qa*")} == {"qa.json", "qa.html", "qa_t0.json", "qa_t0.html",
                                               "qa_t1.json", "qa_t1.html"}
    per = {t: json.loads((d / f"qa_t{t}.json").read_text()) for t in (0, 1)}
    labels = {t: labels_of(res.outputs[f"t{t}_labels"]) for t in (0, 1)}
    for t in (0, 1):
        bright = next(c for c in per[t]["classes"] if c["name"] == "bright")
        assert bright["pixels"] == int(labels[t].sum())  # each report counts its own volume
        assert per[t]["scene"] == f"dyn t{t}"
        assert {c["name"]: c["status"] for c in per[t]["checks"]}["nifti_header"] == "pass"
    assert labels[1].sum() == 0 < labels[0].sum()
    assert per[1]["verdict"]["status"] == "fail" and per[0]["verdict"]["status"] != "fail"
    entry = res.record["qa"]
    assert [v["volume"] for v in entry["volumes"]] == [0, 1]
    severity = {"pass": 0, "warn": 1, "fail": 2}
    worst = max(entry["volumes"], key=lambda v: severity[v["verdict"]])
    assert entry["verdict"] == worst["verdict"] and entry["worst"] == worst["json"]
    assert (d / "qa.json").read_text() == (d / worst["json"]).read_text()  # the run report's row: the worst
    # a re-run removes the old per-volume reports with the old record before it starts
    (d / "qa_t7.json").write_text("{}")
    segment_volume(src, handle(1), tmp_path / "out", RunOptions(series="each", **CPU), qa_thresholds=thresholds)
    assert not (d / "qa_t7.json").exists()
