"""The ``segpipe`` command itself: light parsers, versions, -v/-q anywhere, no abbreviations,
closed pipes, progress bars that leave log lines whole, and the summary lines."""

from __future__ import annotations

import io
import json
import logging
import os
import subprocess
import sys
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from flows import cli
from flows.progress import Bar
from flows.summary import batch_lines, scene_line

HEAVY = ("torch", "prefect", "segmentation_models_pytorch", "timm", "torchvision", "albumentations")
REPO = Path(__file__).resolve().parents[2]


def _python(code: str, **kw) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd=REPO,
                          timeout=120, **kw)


def test_building_every_parser_imports_no_torch_smp_or_prefect():
    """``segpipe --help`` must not pay for torch/Prefect imports (seconds); bench/bench_cli.py times it."""
    out = _python("import sys, json, flows.cli as c; c.build_parser(); "
                  f"print(json.dumps([m for m in {HEAVY!r} if m in sys.modules]))")
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout) == []
    for argv in (["--help"], ["run", "--help"], ["batch", "--help"], ["model", "info", "--help"], ["--version"]):
        out = _python(f"import sys, flows.cli as c\ntry:\n    c.main({argv!r})\nexcept SystemExit:\n    pass\n"
                      f"print('HEAVY', [m for m in {HEAVY!r} if m in sys.modules])")
        assert out.returncode == 0, out.stderr
        assert out.stdout.strip().splitlines()[-1] == "HEAVY []", (argv, out.stdout)


def test_version_names_segpipe_torch_cuda_gdal(capsys):
    with pytest.raises(SystemExit) as exit_:
        cli.main(["--version"])
    assert exit_.value.code == 0
    lines = capsys.readouterr().out.splitlines()
    import rasterio
    import torch

    from pipeline import __version__

    assert lines[0] == f"segpipe {__version__}"
    cuda = f"CUDA {torch.version.cuda}" if torch.version.cuda else "CPU-only build"
    assert lines[1] == f"torch {torch.__version__} ({cuda})"
    assert lines[2] == f"GDAL {rasterio.__gdal_version__} (rasterio {rasterio.__version__})"
    assert lines[3].startswith("Python 3.")


@pytest.mark.parametrize("argv, verbose, quiet", [
    (["report", "d"], 0, False),
    (["-v", "report", "d"], 1, False),
    (["report", "d", "-v"], 1, False),
    (["-v", "report", "-v", "d", "-v"], 3, False),
    (["report", "d", "-vv"], 2, False),
    (["model", "-v", "info", "ck", "-v"], 2, False),
    (["report", "d", "-q"], 0, True),
    (["-q", "run", "x.tif", "--model", "m", "--out", "o"], 0, True),
    (["run", "x.tif", "--model", "m", "--out", "o", "--quiet"], 0, True),
])
def test_verbose_and_quiet_before_or_after_the_command(argv, verbose, quiet):
    args = cli.build_parser().parse_args(argv)
    assert (args.verbose, args.quiet) == (verbose, quiet)
    assert not [k for k in vars(args) if k.startswith("_")]  # the per-parser flags are folded away


@pytest.mark.parametrize("argv, bad", [
    (["run", "x.tif", "--model", "m", "--out", "o", "--til", "256"], "--til"),
    (["run", "x.tif", "--mod", "m", "--out", "o"], "--mod"),
    (["model", "info", "ck", "--js"], "--js"),
    (["report", "d", "--verb"], "--verb"),
    (["--vers"], "--vers"),
])
def test_abbreviated_options_are_errors(argv, bad, capsys):
    with pytest.raises(SystemExit) as exit_:
        cli.build_parser().parse_args(argv)
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert bad in err and ("unrecognized arguments" in err or "required" in err), err


def test_model_info_into_a_closed_pipe_ends_quietly(tmp_path):
    """``segpipe model info --json | head``: the reader is gone before the first write."""
    from models.checkpoint import save_checkpoint
    from models.unet import build_model
    from pipeline.spec import ModelSpec

    ckpt = save_checkpoint(build_model("Unet", "resnet18", 1, 2, encoder_depth=3, decoder_channels=(8, 8, 8)),
                           ModelSpec(1, (1,), ("bg", "fg"), tile=64, overlap=16), tmp_path / "m.safetensors",
                           arch="Unet", encoder="resnet18", arch_kwargs={"encoder_depth": 3,
                                                                          "decoder_channels": [8, 8, 8]})
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen([sys.executable, "-m", "flows.cli", "model", "info", "--json", str(ckpt)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, cwd=REPO)
    proc.stdout.close()  # like `| head -0`: nobody reads
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == cli.EXIT_BROKEN_PIPE
    assert b"Traceback" not in err and b"BrokenPipeError" not in err and b"Exception ignored" not in err, err


# -- progress bars ------------------------------------------------------------------------------
class _Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


def _frames(text: str) -> list[str]:
    return [f for f in text.replace("\n", "\r").split("\r") if f.strip()]


def test_first_frame_shows_no_rate_and_later_ones_a_real_one():
    tty = _Tty()
    with Bar("tile", file=tty) as bar:
        bar.update(40, 100, "")  # 40 tiles were done before the first report: not "40 tiles in 0 s"
        time.sleep(0.25)
        bar.bar.mininterval = 0
        bar.update(50, 100, "1.00 Mpix/s")
    frames = _frames(tty.getvalue())
    assert "?tile/s" in frames[0] and "40/100" in frames[0], frames
    last = next(f for f in reversed(frames) if "50/100" in f)
    rate = float(last.split("tile/s")[0].split()[-1].lstrip("[").split(",")[-1])
    assert 10 <= rate <= 60, last  # 10 tiles in ~0.25 s, not 50 / elapsed-since-creation
    assert "1.00 Mpix/s" in last


def test_log_lines_are_printed_above_the_bar_not_into_it(monkeypatch):
    tty = _Tty()
    monkeypatch.setattr(sys, "stderr", tty)
    handler = logging.StreamHandler(tty)
    handler.setFormatter(logging.Formatter("%(levelname)s %(message)s"))
    root = logging.getLogger()
    monkeypatch.setattr(root, "handlers", [handler])
    log = logging.getLogger("pipeline.test")
    with Bar("tile") as bar:
        bar.update(1, 10)
        log.warning("tile row 3 has NaN values")
        bar.update(2, 10)
    assert root.handlers == [handler]  # restored
    text = tty.getvalue()
    lines = text.split("\n")
    hit = [ln for ln in lines if "tile row 3 has NaN values" in ln]
    assert len(hit) == 1
    # the line was cleared before the message: the message is the whole visible line
    assert hit[0].split("\r")[-1] == "WARNING tile row 3 has NaN values", repr(hit[0])
    assert all("tile row 3" not in f or f == "WARNING tile row 3 has NaN values" for f in _frames(text))


def test_no_bar_off_a_terminal():
    out = io.StringIO()
    with Bar("tile", file=out) as bar:
        bar.update(1, 2)
        bar.write("epoch 1")
    assert out.getvalue() == "epoch 1\n"


# -- summary lines ------------------------------------------------------------------------------
def _record(qa):
    return {"timings": {"total_s": 12.34, "mpix_per_s": 1.5}, "warnings": ["w"],
            "input": {"path": "/data/field.tif", "width": 96, "height": 64}, **({"qa": qa} if qa else {})}


@pytest.mark.parametrize("qa, phrase", [
    ({"verdict": "pass", "reasons": [], "json": "qa.json", "html": "qa.html"}, "QA pass: out/field/qa.html"),
    ({"verdict": "fail", "reasons": ["check cog failed: striped", "mean confidence 0.41 is below 0.60"],
      "json": "qa.json", "html": "qa.html"}, "QA fail: check cog failed: striped (+1 more): out/field/qa.html"),
    ({"verdict": None, "error": "ValueError: boom"}, "QA not written (ValueError: boom)"),
    (None, "QA off"),
])
def test_run_summary_line_gives_verdict_and_report_path(qa, phrase):
    line = scene_line(_record(qa), Path("out/field"))
    assert line == f"field.tif: 96x64 -> out/field/ in 12.3 s (1.50 Mpix/s); {phrase}; 1 warning(s)"


def test_batch_lines_give_verdicts_and_report_only_when_this_run_wrote_them(tmp_path):
    from pipeline.qa.run_report import write_run_report

    since = datetime.now(timezone.utc) - timedelta(seconds=2)
    scene = tmp_path / "s1"
    scene.mkdir()
    write_run_report(tmp_path, [], run_id="r1", update_history=False)
    lines = batch_lines("Failed", "1 of 2 scene(s) failed (1 done):\n  broken: InputError: x", tmp_path, since)
    assert lines[0] == (f"segpipe batch: Failed: 1 of 2 scene(s) failed (1 done); QA 0 pass, 0 warn, 0 fail; "
                        f"report {tmp_path / 'run_report.html'}")
    assert lines[1:] == ["  broken: InputError: x"]
    later = datetime.now(timezone.utc) + timedelta(seconds=5)
    assert batch_lines("Completed", "2 done", tmp_path, later) == [
        "segpipe batch: Completed: 2 done; no run report written"]
