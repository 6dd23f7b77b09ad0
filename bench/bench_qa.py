"""QA's streaming observer on the host: Mpix/s with and without the device tallies.

    python bench/bench_qa.py                       # 8192 x 20000 scene in 448-row bands
    python bench/bench_qa.py --height 4096 --width 4096

QA runs in a thread of its own during a scene, and at GPU speed it was the slowest stage
(bench/RESULTS.md). This times ``SceneQA.observe`` on synthetic bands (blocky class map,
nodata on the left edge, random confidence) two ways, single-threaded:

- *host*: bands come as plain arrays; QA counts everything itself (the CPU path, and the
  GPU path before the tallies moved to the device);
- *with tallies*: each band carries the ``BandTallier`` results, as the stitcher ships them
  from the device; QA keeps only components, thumbnails and edge/nodata flags.

It also prints what the tallier itself costs on this CPU (on a GPU it runs on the device).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import pipeline  # noqa: E402,F401
from pipeline.qa import SceneQA  # noqa: E402
from pipeline.qa.tally import BandTallier  # noqa: E402
from pipeline.tiling import TileGrid  # noqa: E402


def bands(height: int, width: int, band_h: int, seed: int = 0):
    import numpy as np

    rng = np.random.default_rng(seed)
    cell = 37
    base = rng.integers(0, 4, size=(height // cell + 2, width // cell + 2)).astype(np.uint8)
    cols = np.arange(width) // cell
    for r0 in range(0, height, band_h):
        h = min(band_h, height - r0)
        labels = base[np.arange(r0, r0 + h) // cell][:, cols]
        valid = np.ones((h, width), bool)
        valid[:, :300] = False
        labels[~valid] = 255
        conf = rng.integers(100, 255, size=(h, width), dtype=np.uint8)
        yield r0, labels, valid, conf


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--height", type=int, default=8192)
    ap.add_argument("--width", type=int, default=20000)
    ap.add_argument("--band", type=int, default=448, help="rows per band (tile - overlap)")
    ap.add_argument("--component-workers", type=int, nargs="+", default=[1],
                    help="threads labelling classes at once; several values: one 'with tallies' run each")
    args = ap.parse_args()
    grid = TileGrid.build(args.height, args.width, 512, 64)
    names = ("a", "b", "c", "d")
    data = list(bands(args.height, args.width, args.band))
    mpix = args.height * args.width / 1e6

    # the stitcher's reducer: SceneQA's own (class counts, seams, and the unsure thumbnail's cells)
    tallier = SceneQA(names, args.height, args.width, grid).band_reducer()
    plain = BandTallier(len(names))  # without the thumbnail's unsure cells, for the in-run ratio
    times: dict[str, list[float]] = {"with": [], "plain": []}
    for _ in range(2):  # alternate, best of two: the first pass also pays torch's warm-up
        for key, tl in (("plain", plain), ("with", tallier)):
            t = time.perf_counter()
            out = [tl.host(r0, lab, ok, conf) for r0, lab, ok, conf in data]
            times[key].append(time.perf_counter() - t)
            if key == "with":
                tallies = out
    tally_s, plain_s = min(times["with"]), min(times["plain"])

    results = {}
    runs = [("host", False, args.component_workers[0])]
    runs += [(f"with tallies{'' if w == 1 else f', {w} component threads'}", True, w) for w in args.component_workers]
    for name, with_tallies, workers in runs:
        qa = SceneQA(names, args.height, args.width, grid, component_workers=workers)
        t = time.perf_counter()
        for (r0, lab, ok, conf), tl in zip(data, tallies):
            qa.observe(r0, lab, ok, conf, 0.0, tl if with_tallies else None)
        dt = time.perf_counter() - t
        results[name] = qa.result()
        print(f"QA observe, {name:12s}: {mpix / dt:7.1f} Mpix/s  ({dt:.2f} s for {mpix:.0f} Mpix, "
              f"components every {qa.components_step} px)")
    print(f"tallier on this CPU      : {mpix / tally_s:7.1f} Mpix/s  ({tally_s:.2f} s; on a GPU it runs on the device)")
    print(f"  without unsure cells   : {mpix / plain_s:7.1f} Mpix/s  (with / without: {tally_s / plain_s:.2f})")
    assert all(r.classes == results["host"].classes for r in results.values()), "the paths disagree"


if __name__ == "__main__":
    main()
