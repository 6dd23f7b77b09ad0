"""``segpipe batch`` exit codes: 0 all done/skipped, 3 some scenes failed, 2 bad job (nothing ran)."""

from __future__ import annotations

import pytest

import flows.cli as cli


@pytest.fixture
def segpipe(monkeypatch):
    # Only the flows' sub-commands: these tests must not depend on other packages' CLI modules.
    monkeypatch.setattr(cli, "COMMAND_MODULES", tuple(m for m in cli.COMMAND_MODULES if m.startswith("flows.")))
    return cli.main


def test_batch_exit_codes(prefect_server, segpipe, make_checkpoint, make_inputs, tmp_path, capsys):
    inputs = make_inputs(n=1, corrupt=True, volume=False)
    out = tmp_path / "out"
    argv = ["batch", str(inputs), "--model", str(make_checkpoint(0)), "--out", str(out), "--quiet"]
    assert segpipe(argv) == 3
    err = capsys.readouterr().err
    assert "1 of 2 scene(s) failed" in err and "broken:" in err
    (inputs / "broken.tif").unlink()
    assert segpipe(argv) == 0  # scene0 skipped, nothing failed


def test_bad_job_is_refused_before_anything_runs(segpipe, tmp_path, capsys):
    for sub in ("x", "y"):
        (tmp_path / sub).mkdir()
        (tmp_path / sub / "s.tif").write_bytes(b"")
    assert segpipe(["batch", str(tmp_path / "x"), str(tmp_path / "y"), "--model", "m", "--out", "o"]) == 2
    assert "name clash" in capsys.readouterr().err
    assert segpipe(["batch", str(tmp_path / "x"), "--out", "o"]) == 2  # no model anywhere
    assert "model: Field required" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()
