"""End-to-end: segment seeded scenes with stand-in models, then check QA verdicts and reasons."""

import json
import warnings

import numpy as np
import pytest
from affine import Affine

from pipeline.errors import SegpipeWarning
from pipeline.qa import CheckContext, QAReport, QAThresholds, SceneQA, finalize_scene_qa, run_checks
from pipeline.readers.geotiff import open_raster
from pipeline.options import RunOptions
from pipeline.tiling import TileGrid

from .conftest import CPU, Scaled, TilePosition, handle, smooth_field, write_tif


def _codes(result):
    return {r.code: r.severity for r in result.report.verdict.reasons}


def test_clean_scene_passes_with_complete_report(run_qa):
    rng = np.random.default_rng(0)
    data = rng.random((3, 150, 130)).astype(np.float32)
    res, qa = run_qa(data, handle(Scaled(50.0)))
    r = qa.report
    assert r.verdict.status == "pass", r.verdict.reasons
    assert {c.name: c.status for c in r.checks} == {"complete": "pass", "geometry": "pass", "cog": "pass",
                                                     "no_nan": "pass"}
    truth = np.bincount(data.argmax(0).ravel(), minlength=3)
    assert [c.pixels for c in r.classes] == truth.tolist()
    assert sum(c.fraction for c in r.classes) == pytest.approx(1.0)
    # 10 m UTM pixels: 100 m2 each, exact.
    assert r.area.unit == "m2" and not r.area.approximate
    assert r.classes[1].area_m2 == pytest.approx(truth[1] * 100.0)
    assert r.classes[1].area_ha == pytest.approx(truth[1] / 100.0)
    assert r.input.valid_fraction == 1.0 and r.input.crs_name == "EPSG:32633"
    assert r.performance.stages_s and r.performance.qa_s > 0 and r.performance.peak_rss_mb > 0
    assert qa.json_path.name == "qa.json" and qa.html_path.name == "qa.html"
    assert not list(res.scene_dir.glob(".*partial*"))


def test_all_nodata_scene_fails_with_reason(run_qa):
    data = np.zeros((3, 70, 90), dtype=np.uint16)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SegpipeWarning)
        _, qa = run_qa(data, handle(Scaled()), nodata=0)
    r = qa.report
    assert r.verdict.status == "fail"
    assert _codes(qa)["empty_mask"] == "fail"
    assert r.input.valid_pixels == 0 and r.input.valid_fraction == 0.0
    assert all(c.pixels == 0 and c.components == 0 for c in r.classes)
    assert r.confidence is None
    # The severity is the job's to choose.
    _, qa2 = run_qa(data, handle(Scaled()), thresholds=QAThresholds(empty_mask="warn"), out="out2")
    assert qa2.report.verdict.status == "warn"


def test_mostly_nodata_warns(run_qa):
    rng = np.random.default_rng(3)
    data = (rng.integers(1, 1000, (3, 96, 96))).astype(np.uint16)
    data[:, :, :70] = 0  # 73% nodata
    _, qa = run_qa(data, handle(Scaled(0.05)), nodata=0)
    assert _codes(qa).get("nodata") == "warn"
    assert qa.report.input.valid_fraction == pytest.approx(26 / 96)


def _blob_scene(y0, x0, h=120, w=140):
    data = np.zeros((2, h, w), dtype=np.float32)
    data[0] = 1.0
    data[1, y0:y0 + 30, x0:x0 + 25] = 2.0
    return data


def test_mask_touching_the_border_is_flagged(run_qa):
    _, inner = run_qa(_blob_scene(40, 50), handle(Scaled(), bands=2), name="inner.tif")
    _, edge = run_qa(_blob_scene(90, 115), handle(Scaled(), bands=2), name="edge.tif")
    ci, ce = inner.report.classes[1], edge.report.classes[1]
    assert (ci.components, ci.largest_component, ci.touches_border) == (1, 30 * 25, False)
    assert (ce.components, ce.largest_component, ce.touches_border, ce.largest_touches_border) == (1, 750, True, True)
    assert ci.pixels == ce.pixels == 750  # counted, never zeroed
    assert "touches_border" in _codes(edge) and "touches_border" not in _codes(inner)


def test_mask_touching_nodata_is_flagged(run_qa):
    data = _blob_scene(40, 50).astype(np.float32)
    data[:, :, 75:] = np.nan  # the blob (cols 50..74) ends where the data ends
    with pytest.warns(SegpipeWarning, match="NaN"):
        _, qa = run_qa(data, handle(Scaled(), bands=2), nodata=float("nan"))
    c = qa.report.classes[1]
    assert c.touches_nodata and not c.touches_border


def test_low_confidence_model_warns(run_qa):
    rng = np.random.default_rng(1)
    data = rng.random((3, 100, 100)).astype(np.float32)
    _, sure = run_qa(data, handle(Scaled(50.0)), name="sure.tif")
    _, unsure = run_qa(data, handle(Scaled(0.3)), name="unsure.tif")
    assert sure.report.confidence.mean > 0.9
    assert unsure.report.confidence.mean < 0.45
    assert unsure.report.verdict.status == "warn"
    assert {"low_confidence", "low_confidence_fraction"} <= set(_codes(unsure))
    assert sum(unsure.report.confidence.histogram) == 100 * 100
    assert unsure.report.classes[0].low_confidence_fraction > 0.9
    assert unsure.report.mean_entropy > sure.report.mean_entropy


def test_wrong_blend_raises_the_seam_score(run_qa):
    field = smooth_field(256, 256, seed=4)[None]
    seams = RunOptions(tile=64, overlap=0, blend="constant", **CPU)
    _, bad = run_qa(field, handle(TilePosition(6.0), bands=1), seams, name="bad.tif")
    _, clean = run_qa(field, handle(TilePosition(0.0), bands=1), seams, name="clean.tif")
    _, blended = run_qa(field, handle(TilePosition(6.0), bands=1),
                        RunOptions(tile=64, overlap=32, blend="gaussian", **CPU), name="blended.tif")
    b, c, g = bad.report.seams.score, clean.report.seams.score, blended.report.seams.score
    assert 0.5 < c < 1.5, c
    assert b > 5 * c and b > 3.0, (b, c)
    assert g < b / 2, (g, b)
    assert "seams" in _codes(bad) and "seams" not in _codes(clean)


def test_class_fraction_threshold(run_qa):
    data = _blob_scene(40, 50)
    th = QAThresholds(class_fraction={"c1": (0.10, 0.5), "nope": (0, 1)})
    _, qa = run_qa(data, handle(Scaled(), bands=2), thresholds=th)
    codes = _codes(qa)
    assert codes["class_fraction"] == "warn" and codes["unknown_class"] == "info"
    assert "c1" in next(r.message for r in qa.report.verdict.reasons if r.code == "class_fraction")


def test_output_checks_catch_moved_and_striped_mask(tmp_path):
    src = write_tif(tmp_path / "in.tif", np.ones((1, 600, 600), np.uint8))
    bad = write_tif(tmp_path / "mask.tif", np.zeros((1, 600, 600), np.uint8), tiled=False,
                    transform=Affine(10, 0, 500010, 0, -10, 6000000), blockxsize=None, blockysize=None)
    ctx = CheckContext(src, tmp_path, {"mask": bad, "confidence": tmp_path / "missing.tif"})
    checks = {c.name: c for c in run_checks(ctx, extra={"nifti_header": lambda: ["qform_code 0 != 1"]})}
    assert checks["geometry"].status == "fail" and "transform" in checks["geometry"].detail
    assert checks["cog"].status == "fail"
    assert checks["complete"].status == "fail" and "missing.tif" in checks["complete"].detail
    assert checks["nifti_header"].status == "fail" and "qform" in checks["nifti_header"].detail
    ok = {c.name: c.status for c in run_checks(CheckContext(src, tmp_path, {"mask": src}), ("geometry", "no_nan"))}
    assert ok == {"geometry": "pass", "no_nan": "pass"}


def test_failed_check_fails_the_scene(run_qa):
    rng = np.random.default_rng(2)
    res, qa = run_qa(rng.random((3, 64, 64)).astype(np.float32), handle(Scaled(50.0)))
    assert qa.report.verdict.status == "pass"
    info = open_raster(res.record["input"]["path"])
    again = SceneQA.for_scene(info, TileGrid.build(64, 64, 64, 16), ("c0", "c1", "c2"))
    again.observe(0, np.zeros((64, 64), np.uint8), np.ones((64, 64), bool))
    out = finalize_scene_qa(again, scene_dir=res.scene_dir, record=res.record, outputs=res.outputs,
                            extra_checks={"header_round_trip": lambda: ["sform differs"]})
    assert out.report.verdict.status == "fail"
    assert _codes(out)["check_header_round_trip"] == "fail"


def test_geographic_crs_area_is_approximate_and_flagged(run_qa):
    data = _blob_scene(40, 50)
    # ~0.0001 deg pixels at 60 N: about 5.6 m x 11.1 m.
    _, qa = run_qa(data, handle(Scaled(), bands=2), crs="EPSG:4326",
                   transform=Affine(0.0001, 0, 10.0, 0, -0.0001, 60.0))
    r = qa.report
    assert r.area.approximate and "geographic" in r.area.note
    assert "area_approximate" in _codes(qa)
    # Spherical check: 750 pixels x (R dlat)(R cos(lat) dlon).
    R = 6371008.8
    approx = 750 * (R * np.radians(1e-4)) ** 2 * np.cos(np.radians(60.0 - 0.0055))
    assert r.classes[1].area_m2 == pytest.approx(approx, rel=0.01)


def test_schema_round_trip(run_qa):
    rng = np.random.default_rng(5)
    _, qa = run_qa(rng.random((3, 80, 70)).astype(np.float32), handle(Scaled(0.5)))
    r = qa.report
    assert QAReport.model_validate_json(r.model_dump_json()) == r
    on_disk = QAReport.model_validate(json.loads(qa.json_path.read_text()))
    assert on_disk == r and on_disk.schema_version == 1
    with pytest.raises(ValueError):
        QAReport.model_validate({**json.loads(qa.json_path.read_text()), "surprise": 1})


def test_html_is_self_contained(run_qa):
    rng = np.random.default_rng(6)
    _, qa = run_qa(rng.random((3, 90, 90)).astype(np.float32), handle(Scaled(5.0)))
    html = qa.html_path.read_text()
    assert "http://" not in html and "https://" not in html and 'src="//' not in html
    assert html.count('src="data:image/webp;base64,') == 3  # input + mask, mask, where the model is unsure
    assert "image/png" not in html
    assert qa.report.thumbnail.startswith("data:image/webp;base64,")  # the run report's row picture
    assert qa.report.verdict.status in html


def test_thresholds_reject_bad_config():
    with pytest.raises(ValueError, match="class_fraction"):
        QAThresholds(class_fraction={"water": (0.5, 0.2)})
    with pytest.raises(ValueError, match="min_mean_confidence"):
        QAThresholds(min_mean_confidence=2)
    with pytest.raises(ValueError):
        QAThresholds(max_seam_scor=3)  # typo: unknown key
