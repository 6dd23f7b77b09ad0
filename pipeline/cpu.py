"""Which precision a device runs the model at, and why: the CPU's native bf16 check.

bf16 pays on a CPU only where the processor multiplies bf16 natively: AMX-BF16 (Xeon
Sapphire Rapids and later) or AVX512-BF16 (Cooper Lake, AMD Zen 4 and later). There
oneDNN's bf16 convolutions run the U-Net 2-3.6x faster than fp32, with a trained model's
masks agreeing on > 99.9 % of pixels (bench/RESULTS.md, tests/models/train/test_bf16.py).
Elsewhere bf16 is emulated (converted to and from fp32 around fp32 arithmetic) and has no
faster arithmetic to offer, so ``auto`` stays fp32 there. ARM CPUs with bf16 dot products
are left at fp32 too: not measured.

The processor's features come from torch's own cpuinfo (``torch.cpu.get_capabilities``),
the same library oneDNN's dispatch agrees with; ``/proc/cpuinfo`` flags are the fallback
for a torch without that call. ``SEGPIPE_CPU_BF16=0`` (or ``1``) overrides the answer: it
lets one test suite exercise both kinds of CPU on one machine, and lets a user keep fp32
under ``auto`` on a machine where bf16 measures slower.

Threads: the engine keeps torch's intra-op thread count (one per physical core in the
process's CPU affinity) and makes the OpenMP threads sleep while they wait
(``OMP_WAIT_POLICY=PASSIVE``, set in ``pipeline/__init__.py`` because OpenMP reads it when
torch loads). Spinning threads burn a core each between the model's operations, taking it
from the reader, writer and QA threads and from any other process; on a busy machine that
made the model 2-4x slower, while fewer threads would give up the idle machine's cores
(bench/RESULTS.md, "Threads").
"""

from __future__ import annotations

import functools
import os
from pathlib import Path

import torch

# torch.cpu.get_capabilities() key -> the name users know, best first.
NATIVE_BF16 = (("amx_bf16", "AMX-BF16"), ("avx512_bf16", "AVX512-BF16"))
ENV_OVERRIDE = "SEGPIPE_CPU_BF16"
CPUINFO = Path("/proc/cpuinfo")


def cpu_bf16() -> str | None:
    """The CPU's native bf16 matrix instructions ('AMX-BF16', 'AVX512-BF16'), or None.

    ``SEGPIPE_CPU_BF16=0`` answers None, ``=1`` answers as if the CPU had them.
    """
    forced = os.environ.get(ENV_OVERRIDE, "").strip()
    if forced in ("0", "1"):
        return f"{ENV_OVERRIDE}={forced}" if forced == "1" else None
    if not (torch.backends.mkldnn.is_available() and torch.backends.mkldnn.enabled):
        return None  # no oneDNN: bf16 convolutions would take torch's slow reference path
    flags = _cpu_flags()
    return next((name for key, name in NATIVE_BF16 if key in flags), None)


@functools.lru_cache(maxsize=1)
def _cpu_flags() -> frozenset[str]:
    """Feature names the CPU has, in torch.cpu.get_capabilities()' spelling."""
    get = getattr(torch.cpu, "get_capabilities", None)
    if get is not None:
        return frozenset(k for k, v in get().items() if v is True)
    try:  # older torch: the kernel's flags spell these two the same way
        text = CPUINFO.read_text()
    except OSError:
        return frozenset()
    flags = next((ln.split(":", 1)[1] for ln in text.splitlines() if ln.startswith("flags")), "")
    return frozenset(flags.split())


def choose_precision(device: torch.device, asked: str) -> tuple[str, str]:
    """``(precision, reason)`` the model runs at on ``device`` for the ``asked`` setting.

    ``auto``: bf16 autocast on CUDA; on the CPU bf16 where the processor has native bf16
    (see the module docstring), fp32 otherwise. Anything else is taken as asked.
    """
    if asked != "auto":
        return asked, f"--precision {asked}"
    if device.type == "cuda":
        return "bf16", "auto: CUDA device"
    if device.type != "cpu":
        return "fp32", f"auto: {device.type} device"
    feature = cpu_bf16()
    if feature is not None:
        return "bf16", f"auto: CPU has {feature}"
    return "fp32", "auto: CPU without native bf16 (AMX-BF16 / AVX512-BF16)"
