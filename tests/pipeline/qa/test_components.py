"""Streaming connected components == scipy.ndimage.label on the whole mask."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import ndimage

from pipeline.qa import StreamingComponents


def _truth(labels, k, conn):
    nd = labels.ndim
    structure = ndimage.generate_binary_structure(nd, 1 if conn == "face" else nd)
    out = []
    for c in range(k):
        lab, n = ndimage.label(labels == c, structure)
        sizes = np.bincount(lab.ravel())[1:]
        edge = set()
        for ax in range(nd):
            edge |= set(np.unique(np.take(lab, 0, ax))) | set(np.unique(np.take(lab, -1, ax)))
        edge.discard(0)
        largest = int(sizes.max()) if n else 0
        out.append((n, largest, bool(edge)))
    return out


def _stream(labels, k, conn, cuts, workers=1):
    sc = StreamingComponents(k, labels.ndim, conn, workers=workers)
    bounds = [0, *sorted(set(cuts)), labels.shape[0]]
    for a, b in zip(bounds, bounds[1:]):
        if b > a:
            sc.update(labels[a:b])
    return [(s.count, s.largest, s.touches_edge) for s in sc.close()]


@settings(max_examples=60, deadline=None)
@given(seed=st.integers(0, 2**31), h=st.integers(1, 40), w=st.integers(1, 40), k=st.integers(2, 4),
       density=st.floats(0.2, 0.9), conn=st.sampled_from(["face", "full"]), data=st.data())
def test_row_bands_match_whole_mask_label(seed, h, w, k, density, conn, data):
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, k, (h, w)).astype(np.uint8)
    labels[rng.random((h, w)) > density] = 255  # nodata is never a component
    cuts = data.draw(st.lists(st.integers(1, max(1, h - 1)), max_size=6))
    workers = data.draw(st.sampled_from([1, 3]))  # classes labelled in threads: the same counts
    assert _stream(labels, k, conn, cuts, workers) == _truth(labels, k, conn)


@pytest.mark.parametrize("conn", ["face", "full"])
@pytest.mark.parametrize("seed", range(4))
def test_volume_slices_match_3d_label(seed, conn):
    rng = np.random.default_rng(seed)
    labels = (rng.random((12, 15, 13)) < 0.35).astype(np.uint8)  # 0/1, many merges across slices
    cuts = list(range(1, 12))  # one slice per band
    assert _stream(labels, 2, conn, cuts) == _truth(labels, 2, conn)
    assert _stream(labels, 2, conn, cuts, workers=2) == _truth(labels, 2, conn)


def test_spiral_merges_late():
    # A U shape whose arms only join in the last band: two open components become one.
    m = np.zeros((30, 20), np.uint8)
    m[:, 2], m[:, 17], m[29, 2:18] = 1, 1, 1
    sc = StreamingComponents(2)
    for y in range(0, 30, 4):
        sc.update(m[y:y + 4])
    s = sc.close()[1]
    assert (s.count, s.largest) == (1, 30 + 30 + 14)
