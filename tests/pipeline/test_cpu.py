"""``--precision auto``: bf16 where the CPU multiplies bf16 natively, fp32 where it does not, and why."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from pipeline import cpu
from pipeline.engine import Predictor
from pipeline.run.geotiff import segment_scene
from pipeline.options import RunOptions

from .conftest import identity_handle

CPU = torch.device("cpu")


@pytest.fixture
def flags(monkeypatch):
    """set(*names): the CPU features torch reports, simulated; no SEGPIPE_CPU_BF16 override."""
    monkeypatch.delenv(cpu.ENV_OVERRIDE, raising=False)

    def set_(*names: str) -> None:
        monkeypatch.setattr(cpu, "_cpu_flags", lambda: frozenset(names))

    return set_


@pytest.mark.parametrize("names, feature", [
    (("avx2", "avx512_f", "amx_tile", "amx_bf16", "avx512_bf16"), "AMX-BF16"),
    (("avx2", "avx512_f", "avx512_bf16"), "AVX512-BF16"),
])
def test_auto_is_bf16_on_a_cpu_with_native_bf16(flags, names, feature):
    flags(*names)
    assert cpu.cpu_bf16() == feature
    assert cpu.choose_precision(CPU, "auto") == ("bf16", f"auto: CPU has {feature}")


@pytest.mark.parametrize("names", [(), ("avx2", "fma3"), ("avx2", "avx512_f", "avx512_vnni", "amx_tile")])
def test_auto_falls_back_to_fp32_on_a_cpu_without_native_bf16(flags, names):
    flags(*names)  # AVX512 without BF16 only emulates it (slower than fp32); AMX tiles alone are int8
    assert cpu.cpu_bf16() is None
    precision, reason = cpu.choose_precision(CPU, "auto")
    assert precision == "fp32" and reason.startswith("auto: CPU without native bf16")


def test_asked_precision_is_kept_and_named(flags):
    flags("amx_bf16")
    assert cpu.choose_precision(CPU, "fp32") == ("fp32", "--precision fp32")
    flags()
    assert cpu.choose_precision(CPU, "bf16") == ("bf16", "--precision bf16")
    assert cpu.choose_precision(torch.device("cuda"), "auto") == ("bf16", "auto: CUDA device")


def test_environment_overrides_what_the_cpu_reports(flags, monkeypatch):
    flags("amx_bf16")
    monkeypatch.setenv(cpu.ENV_OVERRIDE, "0")
    assert cpu.choose_precision(CPU, "auto")[0] == "fp32"
    flags()
    monkeypatch.setenv(cpu.ENV_OVERRIDE, "1")
    assert cpu.choose_precision(CPU, "auto") == ("bf16", f"auto: CPU has {cpu.ENV_OVERRIDE}=1")


def test_without_onednn_auto_is_fp32(flags, monkeypatch):
    flags("amx_bf16")
    monkeypatch.setattr(torch.backends.mkldnn, "enabled", False)
    assert cpu.choose_precision(CPU, "auto")[0] == "fp32"


def test_proc_cpuinfo_is_the_fallback_for_a_torch_without_get_capabilities(monkeypatch, tmp_path):
    info = tmp_path / "cpuinfo"
    info.write_text("processor\t: 0\nflags\t\t: fpu sse avx2 avx512f avx512_bf16 amx_tile\n\nprocessor\t: 1\n")
    monkeypatch.delattr(torch.cpu, "get_capabilities")
    monkeypatch.setattr(cpu, "CPUINFO", info)
    cpu._cpu_flags.cache_clear()
    try:
        assert {"avx512_bf16", "avx2"} <= cpu._cpu_flags() and "amx_bf16" not in cpu._cpu_flags()
    finally:
        cpu._cpu_flags.cache_clear()


def test_the_real_check_agrees_with_torch(monkeypatch):
    monkeypatch.delenv(cpu.ENV_OVERRIDE, raising=False)
    caps = torch.cpu.get_capabilities()
    expected = "AMX-BF16" if caps.get("amx_bf16") else "AVX512-BF16" if caps.get("avx512_bf16") else None
    assert cpu.cpu_bf16() == expected


@pytest.mark.parametrize("native", [True, False])
def test_predictor_resolves_auto_and_says_why(flags, native):
    flags(*(("avx512_bf16",) if native else ()))
    net = torch.nn.Conv2d(3, 3, 3, padding=1)
    pred = Predictor(net, identity_handle().spec, CPU)
    assert pred.precision == ("bf16" if native else "fp32")
    assert pred.autocast_dtype == (torch.bfloat16 if native else None)
    assert pred.precision_reason == ("auto: CPU has AVX512-BF16" if native else
                                     "auto: CPU without native bf16 (AMX-BF16 / AVX512-BF16)")
    assert pred.channels_last and net.weight.is_contiguous(memory_format=torch.channels_last)
    p = pred(torch.rand(2, 3, 32, 32))
    assert p.dtype == torch.float32 and p.shape == (2, 3, 32, 32)
    torch.testing.assert_close(p.sum(1), torch.ones(2, 32, 32))


@pytest.mark.parametrize("native", [True, False])
def test_record_and_qa_report_say_which_precision_ran_and_why(flags, make_tif, tmp_path, native):
    import json

    flags(*(("amx_bf16",) if native else ()))
    data = np.random.default_rng(0).random((3, 80, 90)).astype(np.float32)
    res = segment_scene(make_tif(data), identity_handle(), tmp_path / "out", RunOptions(device="cpu"))
    facts = res.record["facts"]
    want = ("bf16", "auto: CPU has AMX-BF16") if native else ("fp32", "auto: CPU without native bf16 (AMX-BF16 / AVX512-BF16)")
    assert (facts["precision"], facts["precision_reason"]) == want
    qa = json.loads((res.scene_dir / "qa.json").read_text())
    assert (qa["performance"]["precision"], qa["performance"]["precision_reason"]) == want
    assert f"{want[0]} ({want[1]})" in (res.scene_dir / "qa.html").read_text()


def test_the_engine_never_imports_monai():
    """MONAI is the benchmarks' reference (the optional ``bench`` extra), not a dependency of the engine."""
    import re
    from pathlib import Path

    import pipeline

    root = Path(pipeline.__file__).parent
    pattern = re.compile(r"^\s*(import|from)\s+monai\b", re.M)
    offenders = [p for p in root.rglob("*.py") if pattern.search(p.read_text())]
    assert list(root.rglob("*.py")) and offenders == []


def test_openmp_threads_sleep_while_waiting_unless_the_user_says_otherwise():
    """OMP_WAIT_POLICY is read when torch loads, so the entry points import pipeline before torch."""
    import os
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
    code = ("import sys, os, models.checkpoint; m = list(sys.modules); "
            "print(m.index('pipeline') < m.index('torch'), os.environ['OMP_WAIT_POLICY'])")
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True).stdout
    assert out.split() == ["True", "PASSIVE"]
    code = "import os, pipeline; print(os.environ['OMP_WAIT_POLICY'])"  # no torch: cheap
    out = subprocess.run([sys.executable, "-c", code], env={**env, "OMP_WAIT_POLICY": "ACTIVE"},
                         capture_output=True, text=True, check=True).stdout
    assert out.split() == ["ACTIVE"]
