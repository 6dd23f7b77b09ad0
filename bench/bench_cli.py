"""How long ``segpipe --help`` / ``--version`` take, next to a bare interpreter and ``import torch``.

    python bench/bench_cli.py [--repeat 7]

Each command runs as a fresh process (as a user's shell starts it); the median wall time of
``--repeat`` runs is printed, with each command's ratio to ``import torch``, measured in the
same run.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
COMMANDS = {
    "python -c pass": [sys.executable, "-c", "pass"],
    "segpipe --help": [sys.executable, "-m", "flows.cli", "--help"],
    "segpipe --version": [sys.executable, "-m", "flows.cli", "--version"],
    "segpipe run --help": [sys.executable, "-m", "flows.cli", "run", "--help"],
    "python -c 'import torch'": [sys.executable, "-c", "import torch"],
}


def wall(cmd: list[str]) -> float:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    t = time.perf_counter()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, env=env, cwd=REPO)
    return time.perf_counter() - t


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--repeat", type=int, default=7)
    args = ap.parse_args()
    for cmd in COMMANDS.values():
        wall(cmd)  # warm the page cache
    medians = {name: statistics.median(wall(cmd) for _ in range(args.repeat)) for name, cmd in COMMANDS.items()}
    torch_s = medians["python -c 'import torch'"]
    print(f"| command | median wall (s), {args.repeat} runs | / import torch |")
    print("| --- | --- | --- |")
    for name, s in medians.items():
        print(f"| `{name}` | {s:.3f} | {s / torch_s:.2f} |")


if __name__ == "__main__":
    main()
