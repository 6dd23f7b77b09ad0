"""Importing the engine turns on torch's transparent-huge-page allocation for big CPU tensors.

Without it every fresh activation buffer is faulted in and zeroed 4 KiB at a time (about
as much system time as compute per CPU batch; bench/RESULTS.md). Each check runs in a
fresh interpreter, since torch reads the setting once.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

FAULTS = """
import resource, sys
import pipeline, torch
def faults():
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt
f0 = faults()
for _ in range(4):
    x = torch.empty(64 << 20, dtype=torch.uint8)
    x.fill_(1)
    del x
print((faults() - f0) // 4)
"""


def _python(code: str, **env: str) -> str:
    environ = {k: v for k, v in os.environ.items() if k != "THP_MEM_ALLOC_ENABLE"} | env
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=environ, capture_output=True, text=True,
                         check=True)
    return out.stdout.strip()


def test_import_sets_huge_page_allocation():
    assert _python("import os, pipeline; print(os.environ['THP_MEM_ALLOC_ENABLE'])") == "1"


def test_user_choice_is_kept():
    code = "import os, pipeline; print(os.environ['THP_MEM_ALLOC_ENABLE'])"
    assert _python(code, THP_MEM_ALLOC_ENABLE="0") == "0"


def _thp_mode() -> str:
    try:
        text = Path("/sys/kernel/mm/transparent_hugepage/enabled").read_text()
    except OSError:
        return "unknown"
    return text.split("[", 1)[1].split("]", 1)[0] if "[" in text else "unknown"


@pytest.mark.skipif(_thp_mode() not in ("always", "madvise"),
                    reason="this kernel has transparent huge pages off; nothing to measure")
def test_big_tensors_fault_in_far_fewer_pages():
    pages_4k = (64 << 20) // 4096  # 16384 faults for a 64 MiB buffer in 4 KiB pages
    with_thp = int(_python(FAULTS))
    without = int(_python(FAULTS, THP_MEM_ALLOC_ENABLE="0"))
    assert without >= 0.9 * pages_4k
    assert with_thp < pages_4k / 4, (with_thp, without)
